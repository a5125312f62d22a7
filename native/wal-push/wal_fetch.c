/*
 * pgbacula-wal-fetch: restore_command's quick "not archived" answer.
 *
 *   restore_command = 'pgbacula-wal-fetch NODE CLI wal-fetch [--repo DIR | --wal-spool DIR] [--staged DIR] [--latest] %f %p'
 *
 * Everything after the helper's name is the `pgbacula wal-fetch` command line itself (NODE running
 * bin/pgbacula.js). A server in recovery asks for many files that do not exist — the next timeline's
 * history file, the segment after the last one, each timeline's history at promotion — and each
 * answer costs a Node start (about 0.1 s). This helper answers those with exit 1 when no file the
 * Node command could serve exists, and runs the Node command for everything else (execv: the same
 * process, the same exit status, the same messages). It never serves, validates or writes a file.
 *
 * "Could serve" is judged wider than the Node command judges it (src/archive/fetch.ts), never
 * narrower: a wrong "absent" would end recovery early. The Node command is run whenever
 *   - the arguments are not exactly of the form above, or the name is not a segment or history name;
 *   - the data directory (the working directory) has no readable pg_control of a supported major;
 *   - any place that may hold the file (the staged directory; the archive's file, its `.partial`
 *     and the receiver's `.partial`) exists or cannot be looked at (any error but ENOENT);
 *   - the archive's directory of this system is not there (the Node command decides what that means).
 * docs/wal-archive.md ("restore_command") describes it for operators.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal_push_facts.h"

#define EXIT_ABSENT 1
/* Any status above 125 stops recovery with FATAL (src/command/wal-fetch.ts): a broken command
 * line must not read as "not archived". */
#define EXIT_RECOVERY_FATAL 200

static char *const *node_argv;

/* Run the Node command: from here on it answers, as if the helper had not been there. */
static void hand_over(void) {
  execv(node_argv[0], node_argv);
  fprintf(stderr, "pgbacula-wal-fetch: cannot run %s: %s\n", node_argv[0], strerror(errno));
  exit(EXIT_RECOVERY_FATAL);
}

static bool all_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) return false;
  return true;
}

/* A path joined with up to three more parts; hands over when it does not fit. */
static const char *path_of(char *buf, size_t size, const char *a, const char *b, const char *c, const char *d) {
  int n = snprintf(buf, size, "%s%s%s%s%s%s%s", a, b ? "/" : "", b ? b : "", c ? "/" : "", c ? c : "", d ? "/" : "", d ? d : "");
  if (n < 0 || (size_t)n >= size) hand_over();
  return buf;
}

/* True only when nothing is at `path`; anything else (it exists, or it cannot be looked at) hands over. */
static void require_absent(const char *path) {
  struct stat st;
  if (lstat(path, &st) == 0) hand_over();
  if (errno != ENOENT) hand_over();
}

/* The system identifier of the data directory in the working directory; hands over when unknown. */
static void system_id(char *out, size_t size) {
  int fd = open("global/pg_control", O_RDONLY | O_CLOEXEC);
  if (fd < 0) hand_over();
  uint8_t b[PGB_PG_CONTROL_IDENTITY_BYTES];
  ssize_t n = pread(fd, b, sizeof b, 0);
  close(fd);
  if (n != (ssize_t)sizeof b) hand_over();
  uint32_t version = (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
  bool supported = false;
  for (size_t i = 0; i < sizeof PGB_MAJORS / sizeof PGB_MAJORS[0]; i++)
    if (PGB_MAJORS[i].pg_control_version == version) supported = true;
  uint64_t id = 0;
  for (int i = 7; i >= 0; i--) id = id << 8 | b[i];
  if (!supported || id == 0) hand_over();
  snprintf(out, size, "%" PRIu64, id);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "pgbacula-wal-fetch: usage: pgbacula-wal-fetch NODE CLI wal-fetch [--repo DIR | --wal-spool DIR] [--staged DIR] [--latest] %%f %%p\n");
    return EXIT_RECOVERY_FATAL;
  }
  node_argv = argv + 1;
  if (argc < 4 || strcmp(argv[3], "wal-fetch") != 0) hand_over();
  const char *repo = NULL, *spool = NULL, *staged = NULL, *name = NULL, *dest = NULL;
  for (int i = 4; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--latest") == 0) continue;
    if (strcmp(a, "--repo") == 0 && i + 1 < argc && !repo) repo = argv[++i];
    else if (strcmp(a, "--wal-spool") == 0 && i + 1 < argc && !spool) spool = argv[++i];
    else if (strcmp(a, "--staged") == 0 && i + 1 < argc && !staged) staged = argv[++i];
    else if (a[0] == '-' || dest) hand_over();
    else if (!name) name = a;
    else dest = a;
  }
  if (!dest || (repo && spool) || (!repo && !spool && !staged)) hand_over();
  if (repo && !*repo) hand_over();
  if (spool && !*spool) hand_over();
  if (staged && !*staged) hand_over();
  size_t len = strlen(name);
  bool segment = len == 24 && all_hex(name, 24);
  bool history = len == 16 && all_hex(name, 8) && strcmp(name + 8, ".history") == 0;
  if (!segment && !history) hand_over();

  char sys[32];
  system_id(sys, sizeof sys);
  char path[8192];
  if (staged) require_absent(path_of(path, sizeof path, staged, name, NULL, NULL));
  if (repo || spool) {
    char root[4096];
    if (repo) path_of(root, sizeof root, repo, "wal", NULL, NULL);
    else path_of(root, sizeof root, spool, NULL, NULL, NULL);
    struct stat st;
    if (stat(path_of(path, sizeof path, root, sys, NULL, NULL), &st) != 0 || !S_ISDIR(st.st_mode)) hand_over();
    if (history) {
      require_absent(path_of(path, sizeof path, root, sys, name, NULL));
    } else {
      char tli[9], file[64];
      memcpy(tli, name, 8);
      tli[8] = '\0';
      require_absent(path_of(path, sizeof path, root, sys, tli, name));
      snprintf(file, sizeof file, "%s.partial", name);
      require_absent(path_of(path, sizeof path, root, sys, tli, file));
      require_absent(path_of(path, sizeof path, root, sys, PGB_RECEIVE_DIR, file));
    }
  }
  return EXIT_ABSENT;
}
