/* Page checksum verification of relation files on native threads (page_verify.c). */
#ifndef PGB_PAGE_VERIFY_H
#define PGB_PAGE_VERIFY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define PGB_MAX_FAILURES 10000
#define PGB_MAX_PROBLEMS 10000

typedef struct {
  uint32_t file;
  uint32_t first_blkno; /* block number of the file's first page (segment × blocks per segment) */
  uint64_t offset;      /* multiple of the block size */
  uint64_t length;
} pgb_verify_range;

typedef struct {
  uint32_t file;
  uint32_t blkno;
  uint16_t stored;
  uint16_t computed;
} pgb_verify_failure;

typedef struct {
  uint32_t file;
  int err;
  int vanished;
} pgb_verify_problem;

typedef struct {
  uint64_t pages;
  uint64_t new_pages;
  uint64_t torn_pages;
  uint64_t bytes;
} pgb_verify_totals;

typedef struct {
  char **paths;
  uint32_t path_count;
  pgb_verify_range *ranges;
  uint32_t range_count;
  uint32_t block_size;
  uint32_t threads;
  atomic_uint next_range;
  atomic_int cancel;
  pthread_mutex_t lock;
  pgb_verify_totals totals;
  pgb_verify_failure failures[PGB_MAX_FAILURES];
  uint32_t failure_count;
  uint32_t failures_dropped;
  pgb_verify_problem problems[PGB_MAX_PROBLEMS];
  uint32_t problem_count;
  uint32_t problems_dropped;
} pgb_verify_job;

uint16_t pgb_page_checksum(const uint8_t *page, uint32_t block_size, uint32_t blkno);
/* Runs every range on job->threads threads (the caller's included); 0 or an errno. */
int pgb_verify_run(pgb_verify_job *job);

#endif
