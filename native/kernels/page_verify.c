/*
 * verifyRanges: data page checksums of relation files, on native threads, for `verify --pgdata`.
 *
 * Why it exists (README.md, "Performance"): the worker pipeline verifies at ≈ 4.6 GB/s but a
 * verify pays for worker start-up and copies every byte through a JS-owned buffer. Here each
 * thread preads 1 MiB at a time into its own cache-friendly buffer and checks the pages where
 * they are; the only result is a handful of counters and the failures.
 *
 * Rules, the same as the pipeline's (src/format/page-checksum.ts, workers/backup-range.ts):
 *   - a page is new (skipped) when its stored checksum is 0 and every byte is 0;
 *   - the checksum is PostgreSQL's (32 FNV-1a-like lanes over the page with pd_checksum taken as
 *     0, two finishing rounds, xor of the lanes, xor the block number, mod 65535, + 1);
 *   - a page that fails is read again: if its bytes changed, a concurrent write tore the first
 *     read (counted as torn), if they are the same it is a failure;
 *   - a trailing partial page (a file being extended) is not checked; a file that vanished since
 *     the walk (a dropped relation) is reported as vanished, not as an error.
 * pread, not mmap: a relation truncated while we read it would raise SIGBUS through a mapping.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "page_verify.h"

#define LANES 32
#define FNV_PRIME 16777619u
#define CHUNK_BYTES (1024 * 1024)

static const uint32_t lane_seeds[LANES] = {
    0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
    0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
    0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
    0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
};

#define MIX(s, v)                 \
  do {                            \
    uint32_t t_ = (s) ^ (v);      \
    (s) = t_ * FNV_PRIME ^ (t_ >> 17); \
  } while (0)

/* The lanes are independent until the fold: the compiler keeps them in vector registers (AVX2
 * where the CPU has it, chosen when the addon loads). `page` is 4-byte aligned. */
__attribute__((target_clones("avx2", "default")))
uint16_t pgb_page_checksum(const uint8_t *page, uint32_t block_size, uint32_t blkno) {
  const uint32_t *w = (const uint32_t *)page;
  uint32_t sums[LANES];
  memcpy(sums, lane_seeds, sizeof sums);
  uint32_t rows = block_size / (LANES * 4);
  uint32_t first[LANES];
  memcpy(first, w, sizeof first);
  first[2] &= 0xffff0000u; /* pd_checksum (bytes 8-9) counts as zero */
  for (int j = 0; j < LANES; j++) MIX(sums[j], first[j]);
  for (uint32_t r = 1; r < rows; r++) {
    const uint32_t *row = w + (size_t)r * LANES;
    for (int j = 0; j < LANES; j++) MIX(sums[j], row[j]);
  }
  uint32_t folded = 0;
  for (int j = 0; j < LANES; j++) {
    MIX(sums[j], 0);
    MIX(sums[j], 0);
    folded ^= sums[j];
  }
  return (uint16_t)(((folded ^ blkno) % 65535u) + 1u);
}

static int all_zero(const uint8_t *p, uint32_t n) {
  const uint64_t *q = (const uint64_t *)p;
  for (uint32_t i = 0; i < n / 8; i++)
    if (q[i] != 0) return 0;
  return 1;
}

typedef struct {
  pgb_verify_job *job;
  uint8_t *buffer;
  uint8_t *again;
  pgb_verify_totals totals;
} worker_t;

static void add_failure(pgb_verify_job *job, uint32_t file, uint32_t blkno, uint16_t stored, uint16_t computed) {
  pthread_mutex_lock(&job->lock);
  if (job->failure_count < PGB_MAX_FAILURES) {
    pgb_verify_failure *f = &job->failures[job->failure_count++];
    f->file = file;
    f->blkno = blkno;
    f->stored = stored;
    f->computed = computed;
  } else {
    job->failures_dropped++;
  }
  pthread_mutex_unlock(&job->lock);
}

static void add_problem(pgb_verify_job *job, uint32_t file, int err, int vanished) {
  pthread_mutex_lock(&job->lock);
  if (job->problem_count < PGB_MAX_PROBLEMS) {
    job->problems[job->problem_count].file = file;
    job->problems[job->problem_count].err = err;
    job->problems[job->problem_count].vanished = vanished;
    job->problem_count++;
  } else {
    job->problems_dropped++;
  }
  pthread_mutex_unlock(&job->lock);
}

static ssize_t pread_full(int fd, uint8_t *buf, size_t len, off_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static void verify_range(worker_t *w, const pgb_verify_range *r) {
  pgb_verify_job *job = w->job;
  const uint32_t bs = job->block_size;
  int fd = open(job->paths[r->file], O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    add_problem(job, r->file, errno, errno == ENOENT);
    return;
  }
  posix_fadvise(fd, (off_t)r->offset, (off_t)r->length, POSIX_FADV_SEQUENTIAL);
  uint64_t done = 0;
  while (done < r->length && !atomic_load(&job->cancel)) {
    size_t want = r->length - done < CHUNK_BYTES ? (size_t)(r->length - done) : CHUNK_BYTES;
    off_t at = (off_t)(r->offset + done);
    ssize_t got = pread_full(fd, w->buffer, want, at);
    if (got < 0) {
      add_problem(job, r->file, errno, 0);
      break;
    }
    uint32_t pages = (uint32_t)((size_t)got / bs);
    for (uint32_t i = 0; i < pages; i++) {
      const uint8_t *page = w->buffer + (size_t)i * bs;
      uint16_t stored = (uint16_t)(page[8] | (page[9] << 8));
      if (stored == 0 && all_zero(page, bs)) {
        w->totals.new_pages++;
        continue;
      }
      uint32_t blkno = r->first_blkno + (uint32_t)((r->offset + done) / bs) + i;
      uint16_t computed = pgb_page_checksum(page, bs, blkno);
      w->totals.pages++;
      if (computed == stored) continue;
      ssize_t n = pread_full(fd, w->again, bs, at + (off_t)i * bs);
      if (n == (ssize_t)bs && memcmp(w->again, page, bs) == 0)
        add_failure(job, r->file, blkno, stored, computed);
      else
        w->totals.torn_pages++;
    }
    w->totals.bytes += (uint64_t)got;
    if ((size_t)got < want) break; /* the file ends here (it shrank, or a partial last page) */
    done += (uint64_t)got;
  }
  close(fd);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  pgb_verify_job *job = w->job;
  for (;;) {
    uint32_t i = atomic_fetch_add(&job->next_range, 1);
    if (i >= job->range_count || atomic_load(&job->cancel)) break;
    verify_range(w, &job->ranges[i]);
  }
  return NULL;
}

int pgb_verify_run(pgb_verify_job *job) {
  uint32_t threads = job->threads == 0 ? 1 : job->threads;
  if (threads > 64) threads = 64;
  worker_t workers[64];
  pthread_t ids[64];
  uint32_t started = 0;
  int rc = 0;
  memset(workers, 0, sizeof workers);
  for (uint32_t t = 0; t < threads; t++) {
    workers[t].job = job;
    if (posix_memalign((void **)&workers[t].buffer, 64, CHUNK_BYTES) != 0 || posix_memalign((void **)&workers[t].again, 64, job->block_size) != 0) {
      rc = ENOMEM;
      break;
    }
  }
  if (rc == 0) {
    /* The calling thread (libuv's pool) works too: threads - 1 extra. */
    for (uint32_t t = 1; t < threads; t++) {
      if (pthread_create(&ids[t], NULL, worker_main, &workers[t]) != 0) break;
      started = t;
    }
    worker_main(&workers[0]);
    for (uint32_t t = 1; t <= started; t++) pthread_join(ids[t], NULL);
    for (uint32_t t = 0; t < threads; t++) {
      job->totals.pages += workers[t].totals.pages;
      job->totals.new_pages += workers[t].totals.new_pages;
      job->totals.torn_pages += workers[t].totals.torn_pages;
      job->totals.bytes += workers[t].totals.bytes;
    }
  }
  for (uint32_t t = 0; t < threads; t++) {
    free(workers[t].buffer);
    free(workers[t].again);
  }
  return rc;
}
