/* See walk_dir.h. */
#define _GNU_SOURCE /* qsort_r */
#include "walk_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names are gathered into one growing buffer (large allocations are mapped and given back to the
 * system when freed, where a million small ones would stay in the thread's malloc arena). */
typedef struct {
  char *bytes;
  size_t used, capacity;
  uint32_t *offsets;
  size_t count, offsets_capacity;
} name_list;

static int add_name(name_list *l, const char *name) {
  size_t length = strlen(name) + 1;
  if (l->used + length > l->capacity) {
    size_t capacity = l->capacity ? l->capacity * 2 : 64 * 1024;
    while (capacity < l->used + length) capacity *= 2;
    char *bytes = realloc(l->bytes, capacity);
    if (bytes == NULL) return ENOMEM;
    l->bytes = bytes;
    l->capacity = capacity;
  }
  if (l->count == l->offsets_capacity) {
    size_t capacity = l->offsets_capacity ? l->offsets_capacity * 2 : 4096;
    uint32_t *offsets = realloc(l->offsets, capacity * sizeof *offsets);
    if (offsets == NULL) return ENOMEM;
    l->offsets = offsets;
    l->offsets_capacity = capacity;
  }
  if (l->used > UINT32_MAX - length) return EOVERFLOW;
  memcpy(l->bytes + l->used, name, length);
  l->offsets[l->count++] = (uint32_t)l->used;
  l->used += length;
  return 0;
}

static int by_name(const void *a, const void *b, void *base) {
  return strcmp((const char *)base + *(const uint32_t *)a, (const char *)base + *(const uint32_t *)b);
}

static int fail(pgb_walked_dir *out, int error, const char *name) {
  out->error = error;
  snprintf(out->error_name, sizeof out->error_name, "%s", name);
  return error;
}

int pgb_walk_dir(const char *path, pgb_walked_dir *out) {
  memset(out, 0, sizeof *out);
  DIR *dir = opendir(path);
  if (dir == NULL) return errno == ENOENT ? 0 : fail(out, errno, "");
  name_list l = {0};
  int error = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) {
      error = errno;
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if ((error = add_name(&l, e->d_name)) != 0) break;
  }
  if (error != 0) {
    fail(out, error, "");
    goto done;
  }
  qsort_r(l.offsets, l.count, sizeof *l.offsets, by_name, l.bytes);

  size_t n = l.count == 0 ? 1 : l.count;
  out->names = malloc(l.used == 0 ? 1 : l.used);
  out->kinds = calloc(n, sizeof *out->kinds);
  out->sizes = calloc(n, sizeof *out->sizes);
  out->modes = calloc(n, sizeof *out->modes);
  out->mtimes = calloc(n, sizeof *out->mtimes);
  out->links = calloc(n, sizeof *out->links);
  if (!out->names || !out->kinds || !out->sizes || !out->modes || !out->mtimes || !out->links) {
    fail(out, ENOMEM, "");
    goto done;
  }
  int fd = dirfd(dir);
  for (size_t i = 0; i < l.count; i++) {
    const char *name = l.bytes + l.offsets[i];
    struct stat st;
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      fail(out, errno, name);
      goto done;
    }
    uint8_t kind = S_ISREG(st.st_mode) ? 0 : S_ISDIR(st.st_mode) ? 1 : S_ISLNK(st.st_mode) ? 2 : 3;
    if (kind == 2) {
      char target[PATH_MAX];
      ssize_t length = readlinkat(fd, name, target, sizeof target - 1);
      if (length < 0) {
        if (errno == ENOENT) continue;
        fail(out, errno, name);
        goto done;
      }
      target[length] = '\0';
      if ((out->links[out->count] = strdup(target)) == NULL) {
        fail(out, ENOMEM, name);
        goto done;
      }
    }
    size_t length = strlen(name) + 1;
    memcpy(out->names + out->names_bytes, name, length);
    out->names_bytes += length;
    out->kinds[out->count] = kind;
    out->sizes[out->count] = (double)st.st_size;
    out->modes[out->count] = (uint16_t)(st.st_mode & 07777);
    out->mtimes[out->count] = (double)st.st_mtim.tv_sec * 1000.0 + (double)st.st_mtim.tv_nsec / 1e6;
    out->count++;
  }
done:
  free(l.bytes);
  free(l.offsets);
  closedir(dir);
  if (out->error != 0) {
    int e = out->error;
    char name[sizeof out->error_name];
    memcpy(name, out->error_name, sizeof name);
    pgb_walked_dir_free(out);
    out->error = e;
    memcpy(out->error_name, name, sizeof name);
  }
  return out->error;
}

void pgb_walked_dir_free(pgb_walked_dir *d) {
  if (d->links != NULL) {
    for (uint32_t i = 0; i < d->count; i++) free(d->links[i]);
  }
  free(d->names);
  free(d->kinds);
  free(d->sizes);
  free(d->modes);
  free(d->mtimes);
  free(d->links);
  memset(d, 0, sizeof *d);
}

const char *pgb_errno_name(int error) {
  const char *name = strerrorname_np(error);
  return name != NULL ? name : "EIO";
}
