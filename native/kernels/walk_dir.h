/*
 * One directory listed and stat'ed in C, for the backup's walk of a data directory: a directory
 * of a million relation files costs a few typed arrays and one buffer of names here, freed when
 * the call returns, instead of a million strings and stat objects on a JavaScript heap.
 */
#ifndef PGB_WALK_DIR_H
#define PGB_WALK_DIR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t count;
  /* The names of the entries, each ending in NUL, back to back, sorted bytewise. */
  char *names;
  size_t names_bytes;
  uint8_t *kinds;   /* 0 file, 1 directory, 2 symbolic link, 3 other */
  double *sizes;    /* bytes */
  uint16_t *modes;  /* permission bits (mode & 07777) */
  double *mtimes;   /* milliseconds since the epoch, as Node's mtimeMs */
  char **links;     /* the target of each symbolic link (NULL for other entries) */
  /* On failure: the errno and the name it concerns (the directory itself when empty). */
  int error;
  char error_name[256];
} pgb_walked_dir;

/*
 * List `path` (its entries except . and ..) with lstat of each. A directory that does not exist
 * lists as empty, and entries that vanish between the listing and their lstat are left out (a
 * table dropped meanwhile). Returns 0, or an errno with out->error and out->error_name set.
 */
int pgb_walk_dir(const char *path, pgb_walked_dir *out);

void pgb_walked_dir_free(pgb_walked_dir *d);

/* The symbolic name of an errno ("EACCES"), or "EIO" for one without. */
const char *pgb_errno_name(int error);

#endif
