/*
 * pgbacula-wal-push: archive_command without a Node start.
 *
 *   pgbacula-wal-push (--repo DIR | --wal-spool DIR) [--pgdata DIR] FILE
 *
 * Archives one WAL file by the rules of `pgbacula wal-push` (src/archive/push.ts and the layout
 * and rules in the header of src/archive/layout.ts; docs/wal-archive.md): the file is validated
 * before it is stored (name; a segment's long page header — system identifier against the
 * pushing data directory's global/pg_control, segment size, the page magic of a supported major,
 * and every page's address, timeline and magic; a history file parsed; a .backup file's START
 * WAL LOCATION line), the history file of timeline N > 1 is archived first (taken from pg_wal when
 * missing), archive.json is created and checked, and nothing is ever overwritten: a temporary
 * file is written, fsynced, hard-linked under its final name and the directory fsynced. Same
 * messages and exit statuses as wal-push (0 stored or identical, 1 refused or failed, 2 usage).
 *
 * It writes no segment block summaries (src/archive/segment-summary.ts): they are an
 * optimization, and a block-incremental backup summarizes segments without one from the archived
 * WAL (src/archive/changed-blocks.ts).
 *
 * The per-major facts and the constants shared with the TypeScript code come from
 * wal_push_facts.h, generated at build time from the compiled TypeScript (gen-facts.mjs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"
#include "wal_push_facts.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2

/* ---- messages -------------------------------------------------------------------------------- */

static char *xvasprintf(const char *fmt, va_list ap) {
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) {
    fputs("pgbacula: error: out of memory\n", stderr);
    exit(EXIT_REFUSED);
  }
  return s;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = xvasprintf(f, ap);
  va_end(ap);
  return s;
}

static bool g_json;

/* A string as a JSON literal (operator messages hold paths and names: escape what JSON requires). */
static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/*
 * What went wrong, where, and (hint) what to do; then exit. `code` is the stable error class of
 * src/errors.ts (E_<code> in --json output); usage errors exit 2, every other failure 1.
 */
static void die(const char *code, const char *hint, const char *f, ...) __attribute__((noreturn, format(printf, 3, 4)));
static void die(const char *code, const char *hint, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *msg = xvasprintf(f, ap);
  va_end(ap);
  if (g_json) {
    fprintf(stderr, "{\n  \"error\": {\n    \"code\": \"E_%s\",\n    \"message\": ", code);
    json_string(stderr, msg);
    fputs(",\n    \"hint\": ", stderr);
    if (hint != NULL && hint[0] != '\0') json_string(stderr, hint);
    else fputs("null", stderr);
    fputs("\n  }\n}\n", stderr);
  } else if (hint != NULL && hint[0] != '\0') {
    fprintf(stderr, "pgbacula: error: %s\nhint: %s\n", msg, hint);
  } else {
    fprintf(stderr, "pgbacula: error: %s\n", msg);
  }
  exit(strcmp(code, "USAGE") == 0 || strcmp(code, "PARAM_INVALID") == 0 ? EXIT_USAGE : EXIT_REFUSED);
}

static void say(const char *level, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void say(const char *level, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *msg = xvasprintf(f, ap);
  va_end(ap);
  fprintf(stderr, "pgbacula: %s%s\n", level, msg);
  free(msg);
}

/* An I/O failure of the archive (src/archive/archive-io.ts ioError): the error and its fix. */
static void die_io(int err, const char *f, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die_io(int err, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *what = xvasprintf(f, ap);
  va_end(ap);
  const char *hint = err == EACCES || err == EPERM
                         ? "The archive must be writable by the OS user that runs it (archive_command runs as the server's user, usually postgres): e.g. chown -R postgres: on the archive directory."
                     : err == ENOSPC
                         ? "The file system of the archive is full: free space (prune the spool after Bacula confirmed a job), then PostgreSQL retries by itself."
                         : "Check the archive directory: permissions, free space, file system errors.";
  const char *name = strerrorname_np(err);
  die("IO", hint, "%s: %s (%s)", what, strerror(err), name ? name : "?");
}

/* ---- paths and files ------------------------------------------------------------------------- */

static char *join(const char *a, const char *b) { return fmt("%s/%s", a, b); }

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

typedef struct {
  uint8_t *data;
  size_t len;
} bytes_t;

/* Read a whole file; false with errno set when it cannot be opened or read. */
static bool read_file(const char *path, bytes_t *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return false;
  }
  size_t cap = st.st_size > 0 ? (size_t)st.st_size : 4096, len = 0;
  uint8_t *buf = malloc(cap + 1);
  if (buf == NULL) {
    close(fd);
    errno = ENOMEM;
    return false;
  }
  for (;;) {
    if (len == cap) {
      cap *= 2;
      uint8_t *nb = realloc(buf, cap + 1);
      if (nb == NULL) {
        free(buf);
        close(fd);
        errno = ENOMEM;
        return false;
      }
      buf = nb;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      free(buf);
      close(fd);
      errno = e;
      return false;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = 0;
  out->data = buf;
  out->len = len;
  return true;
}

/* The file's bytes, or NULL data when it does not exist; any other failure ends the run. */
static bytes_t read_if_exists(const char *path) {
  bytes_t b = {NULL, 0};
  if (!read_file(path, &b)) {
    if (errno == ENOENT || errno == ENOTDIR) return (bytes_t){NULL, 0};
    die_io(errno, "cannot read %s", path);
  }
  return b;
}

static bool path_exists(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) return true;
  if (errno == ENOENT || errno == ENOTDIR) return false;
  die_io(errno, "cannot check %s", path);
}

static int fsync_path(const char *path, bool dir) {
  int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

static void sync_dir(const char *dir) {
  if (fsync_path(dir, true) != 0) die_io(errno, "cannot fsync %s", dir);
}

/* mkdir -p, fsyncing the parent of each directory created so the new entries are durable. */
static void ensure_dir(const char *dir) {
  if (path_exists(dir)) return;
  char *parent = dir_of(dir);
  if (strcmp(parent, dir) != 0) ensure_dir(parent);
  if (mkdir(dir, PGB_DIR_MODE) != 0) {
    if (errno == EEXIST) {
      free(parent);
      return; /* created concurrently by another writer */
    }
    die_io(errno, "cannot create %s", dir);
  }
  sync_dir(parent);
  free(parent);
}

static bool write_all(int fd, const uint8_t *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= (size_t)n;
  }
  return true;
}

/* `.<name>.tmp-<pid>-<8 hex>` beside path (src/storage/storage.ts temporaryName): written, fsynced. */
static char *write_temporary(const char *path, const uint8_t *data, size_t len) {
  uint32_t r = 0;
  if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint32_t)time(NULL) ^ (uint32_t)getpid();
  char *dir = dir_of(path);
  char *tmp = fmt("%s/.%s.tmp-%ld-%08" PRIx32, dir, base_of(path), (long)getpid(), r);
  free(dir);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, PGB_FILE_MODE);
  if (fd < 0) return NULL;
  if (!write_all(fd, data, len) || fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    free(tmp);
    errno = e;
    return NULL;
  }
  if (close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    errno = e;
    return NULL;
  }
  return tmp;
}

static bool link_unsupported(int e) { return e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == EXDEV || e == ENOSYS; }

/*
 * Publish data under path unless a file of that name exists (src/storage/posix.ts
 * publishIfAbsent): 1 published (durable), 0 it existed, -1 failed with errno set.
 */
static int publish_if_absent(const char *path, const uint8_t *data, size_t len) {
  char *tmp = write_temporary(path, data, len);
  if (tmp == NULL) return -1;
  int result = 1;
  if (link(tmp, path) != 0) {
    int e = errno;
    if (e == EEXIST) result = 0;
    else if (!link_unsupported(e)) result = -1;
    else if (access(path, F_OK) == 0) result = 0;
    else if (rename(tmp, path) != 0) result = -1;
    if (result == -1) e = errno;
    unlink(tmp);
    free(tmp);
    if (result != 1) {
      errno = e;
      return result;
    }
  } else {
    unlink(tmp);
    free(tmp);
  }
  char *dir = dir_of(path);
  int rc = fsync_path(dir, true);
  free(dir);
  return rc == 0 ? 1 : -1;
}

/* Replace path durably (temporary, fsync, rename, directory fsync): archive.json only. */
static void write_file_durable(const char *path, const char *text) {
  char *tmp = write_temporary(path, (const uint8_t *)text, strlen(text));
  if (tmp == NULL) die_io(errno, "cannot write %s", path);
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    die_io(e, "cannot write %s", path);
  }
  free(tmp);
  char *dir = dir_of(path);
  sync_dir(dir);
  free(dir);
}

static char *iso_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  return fmt("%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* ---- WAL file names (src/wal/segment.ts parseWalFileName) ------------------------------------- */

enum kind { K_SEGMENT, K_PARTIAL, K_HISTORY, K_BACKUP };
static const char *const KIND_NAMES[] = {"segment", "partial", "history", "backup"};

typedef struct {
  enum kind kind;
  uint32_t timeline, log, seg, offset;
} walname_t;

static bool hex_field(const char *s, size_t n, uint32_t *out) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= '0' && c <= '9') v = v * 16 + (uint32_t)(c - '0');
    else if (c >= 'A' && c <= 'F') v = v * 16 + (uint32_t)(c - 'A' + 10);
    else return false;
  }
  *out = v;
  return true;
}

/* segsize 0: not known yet (the segment-field bound is checked once the header gave the size). */
static bool parse_wal_name(const char *name, uint64_t segsize, walname_t *w) {
  size_t n = strlen(name);
  memset(w, 0, sizeof *w);
  if (n == 16 && strcmp(name + 8, ".history") == 0) {
    if (!hex_field(name, 8, &w->timeline) || w->timeline == 0) return false;
    w->kind = K_HISTORY;
    return true;
  }
  if (n < 24 || !hex_field(name, 8, &w->timeline) || !hex_field(name + 8, 8, &w->log) || !hex_field(name + 16, 8, &w->seg)) return false;
  const char *rest = name + 24;
  if (*rest == '\0') w->kind = K_SEGMENT;
  else if (strcmp(rest, ".partial") == 0) w->kind = K_PARTIAL;
  else if (strlen(rest) == 16 && rest[0] == '.' && strcmp(rest + 9, ".backup") == 0 && hex_field(rest + 1, 8, &w->offset)) w->kind = K_BACKUP;
  else return false;
  if (w->timeline == 0) return false;
  if (segsize != 0 && (uint64_t)w->seg >= 0x100000000ull / segsize) return false;
  if (segsize != 0 && w->kind == K_BACKUP && w->offset >= segsize) return false;
  return true;
}

static void refuse_name(const char *name) {
  die("PARAM_INVALID",
      "wal-push takes WAL segments (24 upper-case hexadecimal digits), .partial segments, NNNNNNNN.history and .backup files: use archive_command = 'pgbacula-wal-push --repo DIR %p' (or 'pgbacula wal-push %p').",
      "\"%s\" is not a WAL file name", name);
}

static bool valid_segment_size(uint64_t s) { return s >= PGB_MIN_WAL_SEGMENT_SIZE && s <= PGB_MAX_WAL_SEGMENT_SIZE && (s & (s - 1)) == 0; }

/* ---- WAL page headers (src/wal/page-header.ts) ------------------------------------------------ */

#define XLP_LONG_HEADER 0x0002
#define XLP_ALL_FLAGS 0x000f
#define SHORT_HDR 24
#define LONG_HDR 40

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t u64(const uint8_t *p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }

static const struct pgb_major_facts *major_of_magic(uint16_t magic) {
  for (size_t i = 0; i < sizeof PGB_MAJORS / sizeof PGB_MAJORS[0]; i++)
    if (PGB_MAJORS[i].xlog_page_magic == magic) return &PGB_MAJORS[i];
  return NULL;
}

static char *describe_magic(uint16_t magic) {
  const struct pgb_major_facts *m = major_of_magic(magic);
  return m ? fmt("0x%04X (PostgreSQL %d)", magic, m->major) : fmt("0x%04X", magic);
}

#define LSN(x) (unsigned)((x) >> 32), (unsigned)((x) & 0xffffffffu)

/* Problems collected for a refusal (the first three are shown, as wal-push does). */
typedef struct {
  char *items[8];
  int n;
} problems_t;

static void problem(problems_t *p, char *text) {
  if (p->n < 8) p->items[p->n++] = text;
  else free(text);
}

/* walPageHeaderProblems: one page header against what it must be. */
static void page_problems(problems_t *out, const uint8_t *buf, size_t len, size_t off, uint64_t page_addr, uint16_t want_magic, uint32_t max_tli, bool first,
                          const char *system_id, uint32_t segsize) {
  if (len - off < SHORT_HDR) {
    problem(out, fmt("the WAL page at %X/%X is truncated (fewer than %d bytes)", LSN(page_addr), SHORT_HDR));
    return;
  }
  const uint8_t *h = buf + off;
  uint16_t magic = u16(h), info = u16(h + 2);
  uint32_t tli = u32(h + 4);
  uint64_t addr = u64(h + 8);
  if (magic != want_magic) {
    char *a = describe_magic(magic), *b = describe_magic(want_magic);
    problem(out, fmt("the WAL page at %X/%X has magic %s, expected %s", LSN(page_addr), a, b));
    free(a);
    free(b);
    return; /* the rest of the layout cannot be trusted */
  }
  if ((info & ~XLP_ALL_FLAGS) != 0) problem(out, fmt("the WAL page at %X/%X has unknown flag bits 0x%04X", LSN(page_addr), info));
  if (addr != page_addr) problem(out, fmt("the WAL page at %X/%X claims address %X/%X (stale or recycled content)", LSN(page_addr), LSN(addr)));
  if (tli == 0) problem(out, fmt("the WAL page at %X/%X has timeline 0", LSN(page_addr)));
  else if (tli > max_tli) problem(out, fmt("the WAL page at %X/%X is on timeline %u, newer than timeline %u of its file", LSN(page_addr), tli, max_tli));
  bool is_long = (info & XLP_LONG_HEADER) != 0;
  if (first) {
    if (!is_long) problem(out, fmt("the first WAL page of the segment at %X/%X has no long header", LSN(page_addr)));
    else if (len - off < LONG_HDR) problem(out, fmt("the first WAL page of the segment at %X/%X is truncated (fewer than %d bytes)", LSN(page_addr), LONG_HDR));
    else {
      char sys[24];
      snprintf(sys, sizeof sys, "%" PRIu64, u64(h + 24));
      if (strcmp(sys, system_id) != 0) problem(out, fmt("the WAL segment at %X/%X belongs to system %s, not %s", LSN(page_addr), sys, system_id));
      if (u32(h + 32) != segsize) problem(out, fmt("the WAL segment at %X/%X was written with %u-byte segments, not %u", LSN(page_addr), u32(h + 32), segsize));
      if (u32(h + 36) != PGB_WAL_BLOCK_SIZE) problem(out, fmt("the WAL segment at %X/%X has WAL block size %u, not %d", LSN(page_addr), u32(h + 36), PGB_WAL_BLOCK_SIZE));
    }
  } else if (is_long) {
    problem(out, fmt("the WAL page at %X/%X has a long header but does not start a segment", LSN(page_addr)));
  }
}

static bool zero_header(const uint8_t *buf, size_t len, size_t off) {
  if (len - off < SHORT_HDR) return false;
  for (size_t i = off; i < off + SHORT_HDR; i++)
    if (buf[i] != 0) return false;
  return true;
}

/* validateWalSegment: the long header, then every page; a complete segment may end in zeros. */
static void validate_segment(problems_t *out, const bytes_t *b, uint64_t seg_start, uint32_t segsize, const char *system_id, const struct pgb_major_facts *major,
                             uint32_t timeline, bool partial) {
  if (b->len != segsize) {
    problem(out, fmt("the WAL segment at %X/%X has %zu bytes, expected %u", LSN(seg_start), b->len, segsize));
    return;
  }
  size_t pages = segsize / PGB_WAL_BLOCK_SIZE, page = 1;
  page_problems(out, b->data, b->len, 0, seg_start, major->xlog_page_magic, timeline, true, system_id, segsize);
  if (out->n > 0) return;
  for (; page < pages; page++) {
    size_t off = page * PGB_WAL_BLOCK_SIZE;
    if (zero_header(b->data, b->len, off)) break;
    problems_t p = {{0}, 0};
    page_problems(&p, b->data, b->len, off, seg_start + off, major->xlog_page_magic, timeline, false, NULL, 0);
    if (p.n > 0) {
      if (partial) {
        for (int i = 0; i < p.n; i++) free(p.items[i]);
      } else {
        for (int i = 0; i < p.n; i++) problem(out, p.items[i]);
      }
      return;
    }
  }
  if (!partial && major->switch_zeroes_segment_tail) {
    for (; page < pages; page++) {
      if (!zero_header(b->data, b->len, page * PGB_WAL_BLOCK_SIZE)) {
        problem(out, fmt("the WAL page at %X/%X follows zeroed pages but is not zero (mixed content)", LSN(seg_start + page * PGB_WAL_BLOCK_SIZE)));
        break;
      }
    }
  }
}

/* ---- timeline history files (src/wal/timeline-history.ts parseTimelineHistory) ------------- */

static void history_error(uint32_t file_tli, const char *f, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void history_error(uint32_t file_tli, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *msg = xvasprintf(f, ap);
  va_end(ap);
  die("WAL_CONFLICT", "The file is damaged or is not a PostgreSQL history file; fetch it again from the server (TIMELINE_HISTORY) or the archive.", "%s in timeline history file of timeline %u", msg,
      file_tli);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* Parse as the server does; the parent timelines (ascending) go to parents (may be NULL). */
static size_t parse_history(const bytes_t *b, uint32_t file_tli, uint32_t *parents, size_t max_parents) {
  uint64_t last = 0;
  size_t count = 0;
  const char *text = (const char *)b->data, *end = text + b->len;
  while (text <= end) {
    const char *nl = memchr(text, '\n', (size_t)(end - text));
    const char *line_end = nl ? nl : end;
    char *raw = strndup(text, (size_t)(line_end - text));
    const char *p = text;
    while (p < line_end && is_space(*p)) p++;
    if (p < line_end && *p != '#') {
      const char *d = p;
      while (d < line_end && *d >= '0' && *d <= '9') d++;
      if (d == p) history_error(file_tli, "syntax error (expected a numeric timeline ID) in line \"%s\"", raw);
      const char *q = d;
      bool lsn = false;
      if (q < line_end && is_space(*q)) {
        while (q < line_end && is_space(*q)) q++;
        const char *h = q;
        while (q < line_end && is_hex(*q)) q++;
        if (q - h >= 1 && q - h <= 8 && q < line_end && *q == '/' && q + 1 < line_end && is_hex(q[1])) lsn = true;
      }
      if (!lsn) history_error(file_tli, "syntax error (expected a write-ahead log switchpoint location) in line \"%s\"", raw);
      uint64_t tli = 0;
      bool big = (d - p) > 16;
      for (const char *c = p; c < d && !big; c++) tli = tli * 10 + (uint64_t)(*c - '0');
      if (big || tli < 1 || tli > 0xffffffffull) history_error(file_tli, "invalid timeline %.*s", (int)(d - p), p);
      if (tli <= last) history_error(file_tli, "timeline IDs not in increasing sequence (%" PRIu64 " after %" PRIu64 ")", tli, last);
      if (parents != NULL && count < max_parents) parents[count] = (uint32_t)tli;
      count++;
      last = tli;
    }
    free(raw);
    if (nl == NULL) break;
    text = nl + 1;
  }
  if (last >= file_tli) history_error(file_tli, "timeline %" PRIu64 " is not lower than the file's own timeline %u", last, file_tli);
  return count;
}

/* ---- the archive ------------------------------------------------------------------------------ */

static const char *g_root;
/* History files taken from pg_wal by this run (the --json result lists them). */
static char *g_histories[258];
static size_t g_nhistories;

static void note_history(const char *name, const char *pgdata) {
  say("", "archived %s from %s/pg_wal first (timeline history before the WAL of its timeline)", name, pgdata);
  if (g_nhistories < sizeof g_histories / sizeof g_histories[0]) g_histories[g_nhistories++] = strdup(name);
}

static char *system_dir(const char *sys) { return join(g_root, sys); }

static void sha16(const bytes_t *b, char out[17]) { sha256_hex16(b->data, b->len, out); }

typedef enum { POLICY_REFUSE, POLICY_ASIDE } policy_t;
typedef enum { ST_STORED, ST_IDENTICAL, ST_KEPT_ASIDE } status_t;

static status_t store_bytes(const char *sys, const char *dest, const bytes_t *b, policy_t policy, const char *from, char **kept_path);

static status_t resolve_existing(const char *sys, const char *dest, const bytes_t *existing, const bytes_t *b, policy_t policy, const char *from, char **kept_path) {
  char *dir = dir_of(dest);
  if (existing->len == b->len && memcmp(existing->data, b->data, b->len) == 0) {
    /* An earlier run may have died before its directory fsync. */
    if (fsync_path(dest, false) != 0 || fsync_path(dir, true) != 0) die_io(errno, "cannot fsync %s", dest);
    free(dir);
    return ST_IDENTICAL;
  }
  const char *name = base_of(dest);
  char a[17], o[17];
  sha16(b, o);
  if (policy == POLICY_REFUSE) {
    sha16(existing, a);
    size_t n = strlen(name);
    bool history = n > 8 && strcmp(name + n - 8, ".history") == 0;
    die("WAL_CONFLICT",
        history ? "Two different histories claim this timeline: another server (a restored copy?) archives into the same place. Give each cluster its own archive; never delete archived history files."
                : "Another server with the same system identifier (a restored copy, an old primary after a failover?) archives into the same place, or the archived copy is damaged. The archived file "
                  "was kept; give that server its own archive, and compare both copies (pg_waldump) before removing either.",
        "%s is already archived in %s with different content (%zu bytes, sha256 %s; offered: %zu bytes, sha256 %s, from %s)", name, dir, existing->len, a, b->len, o, from);
  }
  char *sdir = system_dir(sys);
  char *aside = fmt("%s/%s/%s.%s", sdir, PGB_ASIDE_DIR, name, o);
  store_bytes(sys, aside, b, POLICY_REFUSE, from, NULL);
  if (kept_path) *kept_path = aside;
  free(sdir);
  free(dir);
  return ST_KEPT_ASIDE;
}

static status_t store_bytes(const char *sys, const char *dest, const bytes_t *b, policy_t policy, const char *from, char **kept_path) {
  bytes_t existing = read_if_exists(dest);
  if (existing.data != NULL) return resolve_existing(sys, dest, &existing, b, policy, from, kept_path);
  char *dir = dir_of(dest);
  ensure_dir(dir);
  int r = publish_if_absent(dest, b->data, b->len);
  if (r < 0) die_io(errno, "cannot store %s in %s", base_of(dest), dir);
  free(dir);
  if (r == 1) return ST_STORED;
  /* Another writer (wal-receive, a concurrent push) got there first. */
  bytes_t other;
  if (!read_file(dest, &other)) die_io(errno, "cannot store %s in %s", base_of(dest), dir_of(dest));
  return resolve_existing(sys, dest, &other, b, policy, from, kept_path);
}

/* archive.json (src/archive/archive-meta.ts) */
typedef struct {
  bool present;
  long long format;
  char *system_identifier;
  char *created;
  long long wal_segment_size; /* -1 when absent */
  long long xlog_page_magic;
  long long pg_major;
} meta_t;

/* A small JSON reader: enough to validate a document and read the top-level scalars of archive.json. */
typedef struct {
  const char *p, *end;
} json_t;

static void jws(json_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static bool jstring(json_t *j, char **out) {
  if (j->p >= j->end || *j->p != '"') return false;
  j->p++;
  const char *s = j->p;
  while (j->p < j->end && *j->p != '"') {
    if ((unsigned char)*j->p < 0x20) return false;
    if (*j->p == '\\') j->p++;
    j->p++;
  }
  if (j->p >= j->end) return false;
  if (out) *out = strndup(s, (size_t)(j->p - s));
  j->p++;
  return true;
}

static bool jvalue(json_t *j, int depth);

static bool jnumber(json_t *j, long long *out, bool *integral) {
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) return false;
  while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' || *j->p == 'E' || *j->p == '+' || *j->p == '-')) j->p++;
  char *num = strndup(s, (size_t)(j->p - s));
  char *endp;
  double d = strtod(num, &endp);
  bool ok = *endp == '\0';
  free(num);
  if (out) *out = (long long)d;
  if (integral) *integral = ok && d == (double)(long long)d;
  return ok;
}

static bool jvalue(json_t *j, int depth) {
  if (depth > 64) return false;
  jws(j);
  if (j->p >= j->end) return false;
  char c = *j->p;
  if (c == '"') return jstring(j, NULL);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    jws(j);
    if (j->p < j->end && *j->p == close) {
      j->p++;
      return true;
    }
    for (;;) {
      jws(j);
      if (c == '{') {
        if (!jstring(j, NULL)) return false;
        jws(j);
        if (j->p >= j->end || *j->p != ':') return false;
        j->p++;
      }
      if (!jvalue(j, depth + 1)) return false;
      jws(j);
      if (j->p < j->end && *j->p == ',') {
        j->p++;
        continue;
      }
      if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
      }
      return false;
    }
  }
  for (const char *lit = "true\0false\0null\0"; *lit; lit += strlen(lit) + 1) {
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, lit, n) == 0) {
      j->p += n;
      return true;
    }
  }
  return jnumber(j, NULL, NULL);
}

/* Parse archive.json into m; false when it is not valid JSON (an object). */
static bool parse_meta(const bytes_t *b, meta_t *m) {
  json_t all = {(const char *)b->data, (const char *)b->data + b->len};
  if (!jvalue(&all, 0)) return false;
  jws(&all);
  if (all.p != all.end) return false;
  json_t j = {(const char *)b->data, (const char *)b->data + b->len};
  jws(&j);
  if (*j.p != '{') return true; /* valid JSON but no object: the format check below refuses it */
  j.p++;
  for (;;) {
    jws(&j);
    if (*j.p == '}') break;
    char *key = NULL;
    jstring(&j, &key);
    jws(&j);
    j.p++; /* ':' */
    jws(&j);
    long long *num = strcmp(key, "format") == 0           ? &m->format
                     : strcmp(key, "walSegmentSize") == 0 ? &m->wal_segment_size
                     : strcmp(key, "xlogPageMagic") == 0  ? &m->xlog_page_magic
                     : strcmp(key, "pgMajor") == 0        ? &m->pg_major
                                                          : NULL;
    char **str = strcmp(key, "systemIdentifier") == 0 ? &m->system_identifier : strcmp(key, "created") == 0 ? &m->created : NULL;
    bool integral = false;
    if (num && *j.p != '"' && jnumber(&j, num, &integral) && integral) {
      /* read */
    } else if (str && *j.p == '"') {
      jstring(&j, str);
    } else {
      if (num) *num = -2; /* present but not a number: never equal to what is expected */
      jvalue(&j, 0);
    }
    free(key);
    jws(&j);
    if (*j.p == ',') j.p++;
  }
  return true;
}

static void write_meta(const char *sys, const meta_t *m) {
  char *sdir = system_dir(sys);
  char *path = join(sdir, PGB_ARCHIVE_META_FILE);
  char *text;
  if (m->wal_segment_size >= 0)
    text = fmt("{\n \"format\": %lld,\n \"systemIdentifier\": \"%s\",\n \"created\": \"%s\",\n \"walSegmentSize\": %lld,\n \"xlogPageMagic\": %lld,\n \"pgMajor\": %lld\n}\n", m->format,
               m->system_identifier, m->created, m->wal_segment_size, m->xlog_page_magic, m->pg_major);
  else text = fmt("{\n \"format\": %lld,\n \"systemIdentifier\": \"%s\",\n \"created\": \"%s\"\n}\n", m->format, m->system_identifier, m->created);
  write_file_durable(path, text);
  free(text);
  free(path);
  free(sdir);
}

/* ensureArchive: ROOT/<sysid> and its archive.json, created when missing; checked otherwise. */
static meta_t ensure_archive(const char *sys) {
  char *sdir = system_dir(sys);
  char *path = join(sdir, PGB_ARCHIVE_META_FILE);
  meta_t m = {true, -1, NULL, NULL, -1, -1, -1};
  bytes_t b = read_if_exists(path);
  if (b.data != NULL) {
    if (!parse_meta(&b, &m))
      die("REPOSITORY", "Restore the file from a copy, or remove it: the next wal-push rewrites it from the WAL it stores.", "%s is not valid JSON", path);
    if (m.format != PGB_ARCHIVE_FORMAT || m.system_identifier == NULL || strcmp(m.system_identifier, sys) != 0) {
      char *f = m.format == -1 ? strdup("undefined") : fmt("%lld", m.format);
      die("REPOSITORY", "The directory was copied or edited by hand; put each system identifier in its own directory.", "%s describes format %s of system %s, expected format %d of system %s", path,
          f, m.system_identifier ? m.system_identifier : "undefined", PGB_ARCHIVE_FORMAT, sys);
    }
    if (m.created == NULL) m.created = iso_now();
    free(path);
    free(sdir);
    return m;
  }
  ensure_dir(sdir);
  m.format = PGB_ARCHIVE_FORMAT;
  m.system_identifier = strdup(sys);
  m.created = iso_now();
  write_meta(sys, &m);
  free(path);
  free(sdir);
  return m;
}

static bool is_system_id(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 20 || s[0] < '1' || s[0] > '9') return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* listArchivedSystems: the system directories under ROOT, sorted. */
static size_t list_systems(char ***out) {
  DIR *d = opendir(g_root);
  *out = NULL;
  if (d == NULL) {
    if (errno == ENOENT) return 0;
    die_io(errno, "cannot list the WAL archive %s", g_root);
  }
  size_t n = 0, cap = 0;
  char **names = NULL;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!is_system_id(e->d_name)) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      names = realloc(names, cap * sizeof *names);
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n > 1) qsort(names, n, sizeof *names, cmp_str);
  *out = names;
  return n;
}

/* ensureHistoryArchived: timeline N's history (and missing ancestors) before its WAL. */
static void ensure_history_archived(const char *sys, uint32_t tli, const char *pgdata, const char *for_file) {
  char *sdir = system_dir(sys);
  char name[32];
  snprintf(name, sizeof name, "%08X.history", tli);
  char *dest = join(sdir, name);
  if (path_exists(dest)) return;
  char *src = pgdata ? fmt("%s/pg_wal/%s", pgdata, name) : NULL;
  bytes_t content = src ? read_if_exists(src) : (bytes_t){NULL, 0};
  if (content.data == NULL) {
    char *hint = fmt("Archive %s first (PostgreSQL does so when archive_command is set before the promotion): wal-push pg_wal/%s, then retry. Recovery to timeline %08X is impossible without it.", name,
                     name, tli);
    die("WAL_GAP", hint, "%s of timeline %08X refused: %s is not archived in %s", for_file, tli, name, sdir);
  }
  uint32_t parents[256];
  size_t n = parse_history(&content, tli, parents, 256);
  if (n > 256) n = 256;
  for (size_t i = 0; i < n; i++) {
    if (parents[i] < 2) continue;
    char an[32];
    snprintf(an, sizeof an, "%08X.history", parents[i]);
    char *ap = join(sdir, an);
    if (!path_exists(ap)) {
      char *asrc = fmt("%s/pg_wal/%s", pgdata, an);
      bytes_t ac = read_if_exists(asrc);
      if (ac.data != NULL) {
        parse_history(&ac, parents[i], NULL, 0);
        store_bytes(sys, ap, &ac, POLICY_REFUSE, asrc, NULL);
        note_history(an, pgdata);
      }
    }
  }
  store_bytes(sys, dest, &content, POLICY_REFUSE, src, NULL);
  note_history(name, pgdata);
}

/* ---- the repository (src/repo/catalog.ts initRepository) ------------------------------------- */

static void init_repository(const char *repo) {
  char *marker = join(repo, PGB_REPO_MARKER);
  if (path_exists(marker)) return;
  if (repo[0] != '/') die("PARAM_INVALID", "Give --repo an absolute path.", "repository path %s is not absolute", repo);
  char *backups = join(repo, "backups");
  ensure_dir(backups);
  DIR *d = opendir(repo);
  if (d == NULL) die_io(errno, "cannot create the repository %s", repo);
  struct dirent *e;
  /* The marker's temporaries (`.<marker>.tmp-<pid>-…`, or the older `<marker>.tmp-<pid>-…`): a dead writer's are removed. */
  char *tmp_prefix = fmt(".%s.tmp-", PGB_REPO_MARKER);
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "backups") == 0 || strcmp(n, "lock") == 0 || strcmp(n, "wal") == 0 || strcmp(n, PGB_REPO_MARKER) == 0) continue;
    const char *after = strncmp(n, tmp_prefix, strlen(tmp_prefix)) == 0 ? n + strlen(tmp_prefix) : strncmp(n, tmp_prefix + 1, strlen(tmp_prefix) - 1) == 0 ? n + strlen(tmp_prefix) - 1 : NULL;
    if (after != NULL) {
      char *endp;
      long pid = strtol(after, &endp, 10);
      if (endp != after && pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        char *stale = join(repo, n);
        unlink(stale);
        free(stale);
      }
      continue;
    }
    die("REPOSITORY", "Use an empty directory or an existing repository.", "%s is not a pgbacula repository and is not empty (%s…)", repo, n);
  }
  closedir(d);
  char *now = iso_now();
  char *content = fmt("{\"format\":%d,\"created\":\"%s\"}\n", PGB_REPO_FORMAT, now);
  int r = publish_if_absent(marker, (const uint8_t *)content, strlen(content));
  if (r < 0) die_io(errno, "cannot create the repository marker %s", marker);
  /* Not published: another process made it first; its directory fsync may be pending. */
  if (r == 0) sync_dir(repo);
}

/* ---- the data directory (src/archive/data-directory.ts) --------------------------------------- */

/* The system identifier in <pgdata>/global/pg_control; NULL when there is none. */
static char *data_directory_system_id(const char *pgdata, bool strict) {
  char *path = fmt("%s/global/pg_control", pgdata);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR || !strict) return NULL;
    die_io(errno, "cannot read %s", path);
  }
  uint8_t b[PGB_PG_CONTROL_IDENTITY_BYTES] = {0};
  ssize_t n = pread(fd, b, sizeof b, 0);
  close(fd);
  uint32_t version = n == (ssize_t)sizeof b ? u32(b + 8) : 0;
  bool supported = false;
  for (size_t i = 0; i < sizeof PGB_MAJORS / sizeof PGB_MAJORS[0]; i++)
    if (PGB_MAJORS[i].pg_control_version == version) supported = true;
  if (!supported) {
    if (!strict) return NULL;
    die("PARAM_INVALID", "Run wal-push/wal-fetch from the data directory of the server (archive_command and restore_command do), or name it with --pgdata.",
        "%s is not the pg_control file of %s (pg_control_version %u)", path, PGB_SUPPORTED_RANGE, version);
  }
  uint64_t id = u64(b);
  return id == 0 ? NULL : fmt("%" PRIu64, id);
}

/* ---- main ------------------------------------------------------------------------------------- */

static void usage_error(const char *what) {
  die("USAGE", "Set archive_command = 'pgbacula-wal-push --repo /backup/pg %p' (or --wal-spool DIR); it runs in the data directory, as PostgreSQL's archiver does.", "%s", what);
}

static void print_facts(void) {
  printf("{\"supportedRange\":\"%s\",\"archiveFormat\":%d,\"repoFormat\":%d,\"walBlockSize\":%d,\"majors\":[", PGB_SUPPORTED_RANGE, PGB_ARCHIVE_FORMAT, PGB_REPO_FORMAT, PGB_WAL_BLOCK_SIZE);
  for (size_t i = 0; i < sizeof PGB_MAJORS / sizeof PGB_MAJORS[0]; i++)
    printf("%s{\"major\":%d,\"xlogPageMagic\":%u,\"pgControlVersion\":%u,\"switchZeroesSegmentTail\":%s}", i ? "," : "", PGB_MAJORS[i].major, PGB_MAJORS[i].xlog_page_magic,
           PGB_MAJORS[i].pg_control_version, PGB_MAJORS[i].switch_zeroes_segment_tail ? "true" : "false");
  printf("]}\n");
}

int main(int argc, char **argv) {
  const char *repo = NULL, *spool = NULL, *pgdata_flag = NULL, *file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    const char *value = NULL;
    if (strcmp(a, "--print-facts") == 0) {
      print_facts();
      return 0;
    }
    if (strcmp(a, "--json") == 0) {
      g_json = true;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("usage: pgbacula-wal-push (--repo DIR | --wal-spool DIR) [--pgdata DIR] FILE   (archive_command = 'pgbacula-wal-push --repo DIR %%p')\n");
      return 0;
    }
    if (strncmp(a, "--repo", 6) == 0 && (a[6] == '\0' || a[6] == '=')) slot = &repo, value = a[6] ? a + 7 : NULL;
    else if (strncmp(a, "--wal-spool", 11) == 0 && (a[11] == '\0' || a[11] == '=')) slot = &spool, value = a[11] ? a + 12 : NULL;
    else if (strncmp(a, "--pgdata", 8) == 0 && (a[8] == '\0' || a[8] == '=')) slot = &pgdata_flag, value = a[8] ? a + 9 : NULL;
    else if (a[0] == '-' && a[1] == '-' && a[2] != '\0') usage_error(fmt("unknown option %s", a));
    if (slot != NULL) {
      if (value == NULL) {
        if (i + 1 >= argc) usage_error(fmt("%s needs a directory", a));
        value = argv[++i];
      }
      if (value[0] == '\0') usage_error(fmt("%s needs a directory", a));
      *slot = value;
      continue;
    }
    if (file != NULL) usage_error("wal-push takes exactly one file: the %p of archive_command");
    file = a;
  }
  if (file == NULL) usage_error("wal-push takes exactly one file: the %p of archive_command");
  if ((repo == NULL) == (spool == NULL))
    usage_error("pgbacula-wal-push needs --repo DIR or --wal-spool DIR (exactly one; it reads no configuration file, so the spool is always named)");

  /* The repository is created before the first segment, so archive_command may run before the first backup. */
  if (repo != NULL) {
    init_repository(repo);
    g_root = join(repo, "wal");
  } else {
    g_root = spool;
  }
  bool single_system = repo != NULL;

  /* The data directory whose pg_control names the system: --pgdata, else the working directory. */
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == NULL) die_io(errno, "cannot tell the working directory");
  const char *pgdata = NULL;
  char *expected = NULL;
  if (pgdata_flag != NULL) {
    expected = data_directory_system_id(pgdata_flag, true);
    if (expected == NULL)
      die("PARAM_INVALID", "Name the data directory of the server whose WAL this is.", "--pgdata %s is not a PostgreSQL data directory (no global/pg_control)", pgdata_flag);
    pgdata = pgdata_flag;
  } else {
    expected = data_directory_system_id(cwd, false);
    if (expected != NULL) pgdata = cwd;
  }

  char *source = file[0] == '/' ? strdup(file) : fmt("%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, file);
  const char *file_name = base_of(source);
  walname_t w;
  if (!parse_wal_name(file_name, 0, &w)) refuse_name(file_name);
  bytes_t bytes;
  if (!read_file(source, &bytes)) {
    if (errno == ENOENT)
      die("IO", "archive_command passes %p relative to the data directory; run wal-push from there (the archiver does) or give an absolute path.", "the file to archive %s does not exist",
          source);
    die_io(errno, "cannot read %s", source);
  }

  /* Which system: the segment's own long header, checked against the pushing data directory. */
  char header_sys[24] = "";
  bool is_wal = w.kind == K_SEGMENT || w.kind == K_PARTIAL;
  if (is_wal) {
    if (bytes.len < LONG_HDR || (u16(bytes.data + 2) & XLP_LONG_HEADER) == 0)
      die("WAL_CONFLICT", "The file is damaged or is not WAL; check what archive_command is given.", "%s is not a WAL segment: its first page has no long header", source);
    snprintf(header_sys, sizeof header_sys, "%" PRIu64, u64(bytes.data + 24));
  }
  char **systems;
  size_t nsystems = list_systems(&systems);
  if (expected != NULL && is_wal && strcmp(header_sys, expected) != 0)
    die("WAL_CONFLICT", "A WAL file of another cluster was handed to this server's archive_command; it was not archived. Remove it from pg_wal if it was copied there by mistake.",
        "%s belongs to database system %s, not to system %s of the data directory that archives it", file_name, header_sys, expected);
  const char *sys = expected ? expected : is_wal ? header_sys : nsystems == 1 ? systems[0] : NULL;
  if (sys == NULL)
    die("USAGE", "Run wal-push from the data directory of the server (archive_command does) or name it with --pgdata.", "cannot tell which database system %s belongs to", file_name);
  if (!is_system_id(sys)) die("INTERNAL", NULL, "invalid system identifier \"%s\"", sys);
  if (single_system) {
    for (size_t i = 0; i < nsystems; i++)
      if (strcmp(systems[i], sys) != 0)
        die("WAL_CONFLICT", "A repository holds one cluster: give this cluster its own repository (or use a spool directory, which keeps one directory per system).",
            "%s belongs to database system %s, but the repository's WAL archive %s holds WAL of system %s", file_name, sys, g_root, systems[i]);
  }

  meta_t meta = ensure_archive(sys);

  if (is_wal) {
    uint16_t magic = u16(bytes.data);
    uint32_t segsize = u32(bytes.data + 32);
    if (!valid_segment_size(segsize)) die("WAL_CONFLICT", "The file is damaged or is not WAL.", "%s claims a WAL segment size of %u bytes", source, segsize);
    if (!parse_wal_name(file_name, segsize, &w)) refuse_name(file_name);
    const struct pgb_major_facts *major = major_of_magic(magic);
    if (major == NULL)
      die("WAL_CONFLICT", "The file is damaged, or written by an unsupported PostgreSQL version.", "%s has page magic 0x%04X, which is not %s", file_name, magic, PGB_SUPPORTED_RANGE);
    if (meta.wal_segment_size != -1 && meta.wal_segment_size != (long long)segsize)
      die("WAL_CONFLICT", "One system identifier has one segment size; this file does not belong to this archive.",
          "%s uses %u-byte segments but the archive of system %s in %s holds %lld-byte segments", file_name, segsize, sys, g_root, meta.wal_segment_size);
    if (meta.xlog_page_magic != -1 && meta.xlog_page_magic != magic) {
      const struct pgb_major_facts *had = meta.xlog_page_magic >= 0 && meta.xlog_page_magic <= 0xffff ? major_of_magic((uint16_t)meta.xlog_page_magic) : NULL;
      char *had_s = had ? fmt("%d", had->major) : strdup("unknown");
      die("WAL_CONFLICT", "After a major upgrade archive into a new directory (a new repository or spool) and take a new base backup.",
          "%s was written by PostgreSQL %d but the archive of system %s in %s holds WAL of PostgreSQL %s", file_name, major->major, sys, g_root, had_s);
    }
    uint64_t segno = (uint64_t)w.log * (0x100000000ull / segsize) + w.seg;
    problems_t p = {{0}, 0};
    validate_segment(&p, &bytes, segno * segsize, segsize, sys, major, w.timeline, w.kind == K_PARTIAL);
    if (p.n > 0) {
      char *joined = strdup(p.items[0]);
      for (int i = 1; i < p.n && i < 3; i++) {
        char *nj = fmt("%s; %s", joined, p.items[i]);
        free(joined);
        joined = nj;
      }
      die("WAL_CONFLICT", "The file is damaged, recycled, or belongs to another system; it was not archived. Check what archive_command is given and the server log.", "%s refused: %s", file_name,
          joined);
    }
    if (meta.wal_segment_size == -1 || meta.xlog_page_magic == -1) {
      meta.wal_segment_size = segsize;
      meta.xlog_page_magic = magic;
      meta.pg_major = major->major;
      write_meta(sys, &meta);
    }
  } else if (w.kind == K_HISTORY) {
    parse_history(&bytes, w.timeline, NULL, 0);
  } else {
    /* A backup history file holds its START WAL LOCATION line (at the start of a line). */
    static const char want[] = "START WAL LOCATION: ";
    bool found = false;
    for (size_t i = 0; i + sizeof want - 1 <= bytes.len && !found; i++)
      if ((i == 0 || bytes.data[i - 1] == '\n' || bytes.data[i - 1] == '\r') && memcmp(bytes.data + i, want, sizeof want - 1) == 0) found = true;
    if (!found) die("WAL_CONFLICT", "The file is damaged or misnamed.", "%s is not a backup history file (no START WAL LOCATION line)", file_name);
  }

  if (w.kind != K_HISTORY && w.timeline > 1) ensure_history_archived(sys, w.timeline, pgdata, file_name);

  char *sdir = system_dir(sys);
  char *dest;
  if (w.kind == K_HISTORY) dest = join(sdir, file_name);
  else dest = fmt("%s/%08X/%s", sdir, w.timeline, file_name);
  char *kept = NULL;
  status_t st = store_bytes(sys, dest, &bytes, w.kind == K_SEGMENT || w.kind == K_HISTORY ? POLICY_REFUSE : POLICY_ASIDE, source, &kept);
  if (st == ST_KEPT_ASIDE)
    say("warning: ",
        "%s differs from the copy already archived; the new one was kept as %s (recovery never reads %s files; two promotions from the same timeline produce such pairs)", file_name, kept,
        w.kind == K_PARTIAL ? ".partial" : ".backup");
  if (g_json) {
    /* The shape of `pgbacula wal-push --json` (src/command/wal-push.ts). */
    static const char *const STATUS[] = {"stored", "identical", "kept-aside"};
    printf("{\n  \"status\": \"%s\",\n  \"fileName\": ", STATUS[st]);
    json_string(stdout, file_name);
    printf(",\n  \"kind\": \"%s\",\n  \"systemId\": \"%s\",\n  \"timeline\": %u,\n  \"path\": ", KIND_NAMES[w.kind], sys, w.timeline);
    json_string(stdout, st == ST_KEPT_ASIDE ? kept : dest);
    printf(",\n  \"bytes\": %zu,\n  \"historiesArchived\": [", bytes.len);
    for (size_t i = 0; i < g_nhistories; i++) {
      fputs(i ? ", " : "", stdout);
      json_string(stdout, g_histories[i]);
    }
    fputs("],\n  \"archive\": ", stdout);
    json_string(stdout, g_root);
    fputs("\n}\n", stdout);
  }
  if (fflush(stdout) != 0) return EXIT_REFUSED;
  return 0;
}
