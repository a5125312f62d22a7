/*
 * pgbacula_kernels: a small Node-API addon over Debian's liblz4 and libxxhash.
 *
 * Why it exists (measured with npm run bench:kernels): lz4 compression decides the backup throughput and
 * the pure-package path (lz4-napi) reaches about 520 MB/s per thread; liblz4's
 * LZ4_compress_fast_extState with a reused state and a caller-owned output buffer about 1,220 MB/s.
 * Hashing decides the verify/null-sink path, where native xxHash is about 3x xxhash-wasm.
 *
 * Rules every function here keeps:
 *   - it works on memory the caller provides (Uint8Array views, Buffers, WASM memory views) and
 *     allocates nothing per call: no output Buffer is created, so results can be written straight
 *     into a transferable ArrayBuffer the caller owns (lz4-napi's Buffers are copied by postMessage);
 *   - per-thread state (the LZ4 compression state) hangs off napi_set_instance_data, so the addon
 *     is context-aware and loads in any number of worker_threads at once;
 *   - the calls are synchronous and short: they run on the calling (worker) thread.
 *
 * Built by native/kernels/build.sh into native/build/pgbacula_kernels.node; loaded by
 * src/format/kernels.ts, which falls back to pure packages when this file is absent.
 */

#define _GNU_SOURCE /* sync_file_range, syncfs */
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <lz4.h>
#include "page_verify.h"
#include "walk_dir.h"

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t / XXH64_state_t layouts, for caller-owned states */
#include <xxhash.h>
/* libxxhash0 on x86_64 is built with xxh_x86dispatch.c: these entry points pick SSE2, AVX2 or
 * AVX-512 at run time. The plain XXH3_64bits of the shared library is the scalar/SSE2 build. */
#if defined(__x86_64__) || defined(_M_X64)
#include <xxh_x86dispatch.h>
#define PGB_XXH3_64 XXH3_64bits_dispatch
#define PGB_XXH3_UPDATE XXH3_64bits_update_dispatch
#else
#define PGB_XXH3_64 XXH3_64bits
#define PGB_XXH3_UPDATE XXH3_64bits_update
#endif

#define KERNELS_ABI_VERSION 1

/* ---- per-thread instance data ---------------------------------------------------------------- */

typedef struct {
  void *lz4_state; /* LZ4_sizeofState() bytes, reused by every compression on this thread */
} instance_t;

static void instance_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *instance = (instance_t *)data;
  if (instance != NULL) {
    free(instance->lz4_state);
    free(instance);
  }
}

/* ---- argument helpers ------------------------------------------------------------------------ */

#define CHECK_NAPI(call)                                                                            \
  do {                                                                                              \
    if ((call) != napi_ok) {                                                                        \
      throw_last_error(env, #call);                                                                 \
      return NULL;                                                                                  \
    }                                                                                               \
  } while (0)

static void throw_last_error(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  napi_get_last_error_info(env, &info);
  char message[256];
  snprintf(message, sizeof message, "pgbacula kernels: %s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "unknown N-API error");
  napi_throw_error(env, "ERR_PGBACULA_KERNELS", message);
}

static void throw_error(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
}

static void throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

static void throw_range_error(napi_env env, const char *message) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

/*
 * The arguments of a call: `argv` holds up to `max` (missing ones are undefined); fewer than `min`
 * returns from the function with a TypeError saying `usage`.
 */
#define ARGS(max, min, usage)                                                                       \
  size_t argc = (max);                                                                              \
  napi_value argv[(max)];                                                                           \
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));                                 \
  if (argc < (min)) {                                                                               \
    throw_type_error(env, (usage));                                                                 \
    return NULL;                                                                                    \
  }

/* Declares `var` as the bytes of a Uint8Array argument, or returns with the TypeError thrown. */
#define BYTES_ARG(var, value, name)                                                                 \
  bytes_t var = {NULL, 0};                                                                          \
  if (!get_bytes(env, (value), (name), &var.data, &var.length)) return NULL

/* Declares `var` as the hash state in a state buffer argument, or returns with the error thrown. */
#define STATE_ARG(type, var, value, magic, init)                                                    \
  type *var = state_struct(env, (value), (magic), (init));                                          \
  if (var == NULL) return NULL

/* Throws and returns NULL from the calling function, for `if (bad) FAIL(throw_x(env, ...));`. */
#define FAIL(throw_call)                                                                            \
  do {                                                                                              \
    throw_call;                                                                                     \
    return NULL;                                                                                    \
  } while (0)

typedef struct {
  uint8_t *data;
  size_t length;
} bytes_t;

/* A non-NULL address for empty views (a detached or zero-length view reports data == NULL). */
static uint8_t empty_bytes[1];

/* Reads a Uint8Array (a Buffer is one) into pointer + length; false with a TypeError thrown. */
static bool get_bytes(napi_env env, napi_value value, const char *name, uint8_t **data, size_t *length) {
  bool is_typedarray = false;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a Uint8Array", name);
    throw_type_error(env, message);
    return false;
  }
  napi_typedarray_type type;
  void *raw = NULL;
  size_t count = 0;
  if (napi_get_typedarray_info(env, value, &type, &count, &raw, NULL, NULL) != napi_ok) {
    throw_last_error(env, "napi_get_typedarray_info");
    return false;
  }
  if (type != napi_uint8_array && type != napi_uint8_clamped_array) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a Uint8Array, not another typed array", name);
    throw_type_error(env, message);
    return false;
  }
  *data = raw != NULL ? (uint8_t *)raw : empty_bytes;
  *length = raw != NULL ? count : 0;
  return true;
}

/* An optional non-negative integer argument (undefined → fallback). */
static bool get_optional_u32(napi_env env, napi_value value, const char *name, uint32_t fallback,
                             uint32_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_last_error(env, "napi_typeof");
    return false;
  }
  if (type == napi_undefined) {
    *out = fallback;
    return true;
  }
  double number = 0;
  if (type != napi_number || napi_get_value_double(env, value, &number) != napi_ok || number < 0 ||
      number > 4294967295.0 || number != (double)(uint32_t)number) {
    char message[128];
    snprintf(message, sizeof message, "%s must be an integer from 0 to 2^32-1", name);
    throw_range_error(env, message);
    return false;
  }
  *out = (uint32_t)number;
  return true;
}

/* An optional 64-bit seed: undefined, a bigint or a safe integer number. */
static bool get_optional_u64(napi_env env, napi_value value, const char *name, uint64_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_last_error(env, "napi_typeof");
    return false;
  }
  *out = 0;
  if (type == napi_undefined) return true;
  if (type == napi_bigint) {
    bool lossless = false;
    if (napi_get_value_bigint_uint64(env, value, out, &lossless) == napi_ok && lossless) return true;
  } else if (type == napi_number) {
    double number = 0;
    if (napi_get_value_double(env, value, &number) == napi_ok && number >= 0 &&
        number <= 9007199254740991.0 && number == (double)(uint64_t)number) {
      *out = (uint64_t)number;
      return true;
    }
  }
  char message[128];
  snprintf(message, sizeof message, "%s must be a bigint from 0 to 2^64-1", name);
  throw_range_error(env, message);
  return false;
}

static napi_value make_u32(napi_env env, uint32_t value) {
  napi_value result = NULL;
  napi_create_uint32(env, value, &result);
  return result;
}

static napi_value make_u64(napi_env env, uint64_t value) {
  napi_value result = NULL;
  napi_create_bigint_uint64(env, value, &result);
  return result;
}

static napi_value make_f64(napi_env env, double value) {
  napi_value out = NULL;
  napi_create_double(env, value, &out);
  return out;
}

static bool set_u32(napi_env env, napi_value object, const char *name, uint32_t value) {
  return napi_set_named_property(env, object, name, make_u32(env, value)) == napi_ok;
}

static bool set_f64(napi_env env, napi_value object, const char *name, double value) {
  return napi_set_named_property(env, object, name, make_f64(env, value)) == napi_ok;
}

/* ---- LZ4 block ------------------------------------------------------------------------------- */

/* lz4CompressBound(length) → the worst-case compressed size of a block of `length` bytes. */
static napi_value lz4_compress_bound(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "lz4CompressBound(length) needs a length");
  uint32_t length = 0;
  if (!get_optional_u32(env, argv[0], "length", 0, &length)) return NULL;
  if (length > LZ4_MAX_INPUT_SIZE) FAIL(throw_range_error(env, "length is over LZ4_MAX_INPUT_SIZE"));
  return make_u32(env, (uint32_t)LZ4_compressBound((int)length));
}

/*
 * lz4CompressBlock(src, dst, acceleration = 1) → bytes written at dst[0], or 0 when the block
 * does not fit in dst (the caller then stores src raw: give dst src.length - 1 bytes to get a 0
 * exactly when compression would not shrink the block).
 */
static napi_value lz4_compress_block(napi_env env, napi_callback_info info) {
  ARGS(3, 2, "lz4CompressBlock(src, dst[, acceleration]) needs src and dst");
  BYTES_ARG(src, argv[0], "src");
  BYTES_ARG(dst, argv[1], "dst");
  uint32_t acceleration = 1;
  if (argc >= 3 && !get_optional_u32(env, argv[2], "acceleration", 1, &acceleration)) return NULL;
  if (acceleration < 1) acceleration = 1;
  if (acceleration > 65537) acceleration = 65537; /* LZ4_ACCELERATION_MAX */
  if (src.length > LZ4_MAX_INPUT_SIZE) FAIL(throw_range_error(env, "src is over LZ4_MAX_INPUT_SIZE (about 2 GB)"));
  if (dst.length > INT32_MAX) dst.length = INT32_MAX;
  if (dst.length == 0) return make_u32(env, 0);

  instance_t *instance = NULL;
  CHECK_NAPI(napi_get_instance_data(env, (void **)&instance));
  if (instance == NULL || instance->lz4_state == NULL) {
    FAIL(throw_error(env, "ERR_PGBACULA_KERNELS", "pgbacula kernels: no LZ4 state for this thread"));
  }
  int written = LZ4_compress_fast_extState(instance->lz4_state, (const char *)src.data, (char *)dst.data,
                                           (int)src.length, (int)dst.length, (int)acceleration);
  return make_u32(env, written > 0 ? (uint32_t)written : 0);
}

/*
 * lz4DecompressBlock(src, dst[, dict]) → bytes written at dst[0]. `dict` is the up to 64 KiB of
 * output that precedes this block in a frame of linked blocks (lz4 -BD); when it ends exactly where
 * dst starts (one output buffer) liblz4 reads it as a prefix. Corrupt input throws.
 */
static napi_value lz4_decompress_block(napi_env env, napi_callback_info info) {
  ARGS(3, 2, "lz4DecompressBlock(src, dst[, dict]) needs src and dst");
  BYTES_ARG(src, argv[0], "src");
  BYTES_ARG(dst, argv[1], "dst");
  bytes_t dict = {NULL, 0};
  if (argc >= 3) {
    napi_valuetype type;
    CHECK_NAPI(napi_typeof(env, argv[2], &type));
    if (type != napi_undefined && !get_bytes(env, argv[2], "dict", &dict.data, &dict.length)) return NULL;
  }
  if (src.length > INT32_MAX) FAIL(throw_range_error(env, "src is over 2 GiB"));
  if (dst.length > INT32_MAX) dst.length = INT32_MAX;
  if (dict.length > INT32_MAX) dict.length = INT32_MAX;
  int written;
  if (dict.length > 0) {
    written = LZ4_decompress_safe_usingDict((const char *)src.data, (char *)dst.data, (int)src.length, (int)dst.length,
                                            (const char *)dict.data, (int)dict.length);
  } else {
    written = LZ4_decompress_safe((const char *)src.data, (char *)dst.data, (int)src.length, (int)dst.length);
  }
  if (written < 0) {
    char message[200];
    /* liblz4 returns -(position in src + 1) of the first byte it could not use. */
    snprintf(message, sizeof message,
             "lz4 block is corrupt or its output exceeds %zu bytes (decoder stopped near input byte %d of %zu)",
             dst.length, -written - 1, src.length);
    FAIL(throw_error(env, "ERR_PGBACULA_LZ4_CORRUPT", message));
  }
  return make_u32(env, (uint32_t)written);
}

/* ---- xxHash one-shot ------------------------------------------------------------------------- */

/* xxh3(data) → XXH3_64bits(data) as an unsigned bigint (seed 0, default secret). */
static napi_value xxh3(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "xxh3(data) needs data");
  BYTES_ARG(data, argv[0], "data");
  return make_u64(env, PGB_XXH3_64(data.data, data.length));
}

/* xxh64(data, seed = 0n) → XXH64(data, seed) as an unsigned bigint. */
static napi_value xxh64(napi_env env, napi_callback_info info) {
  ARGS(2, 1, "xxh64(data[, seed]) needs data");
  BYTES_ARG(data, argv[0], "data");
  uint64_t seed = 0;
  if (argc >= 2 && !get_optional_u64(env, argv[1], "seed", &seed)) return NULL;
  return make_u64(env, XXH64(data.data, data.length, seed));
}

/* xxh32(data, seed = 0) → XXH32(data, seed) as an unsigned number (LZ4 frame checksums). */
static napi_value xxh32(napi_env env, napi_callback_info info) {
  ARGS(2, 1, "xxh32(data[, seed]) needs data");
  BYTES_ARG(data, argv[0], "data");
  uint32_t seed = 0;
  if (argc >= 2 && !get_optional_u32(env, argv[1], "seed", 0, &seed)) return NULL;
  return make_u32(env, XXH32(data.data, data.length, seed));
}

/* ---- xxHash streaming, in a state buffer the caller owns -------------------------------------- */

/*
 * Layout of a state buffer (STATE_BYTES long, any alignment):
 *
 *   [0, 4)   magic: which hash the state belongs to
 *   [4, 8)   offset of the xxHash state struct from the buffer start, chosen at init so that the
 *            struct is 64-byte aligned (XXH3_state_t's accumulators are read with aligned vector
 *            loads); when the bytes were copied to a buffer of another alignment, the struct is
 *            moved to the new aligned spot before use
 *   [offset, offset + sizeof(struct))  the struct
 *
 * An XXH3 state points to libxxhash's default secret: it is valid in this process only.
 */
#define STATE_MAGIC_XXH3 0x33485850u  /* "PXH3" */
#define STATE_MAGIC_XXH64 0x36485850u /* "PXH6" */
#define STATE_MAGIC_XXH32 0x32485850u /* "PXH2" */
#define STATE_HEADER_BYTES 8
#define STATE_ALIGN 64
/* XXH3_state_t is by far the largest of the three (576 bytes against 88 and 48). */
#define STATE_STRUCT_BYTES sizeof(XXH3_state_t)
_Static_assert(sizeof(XXH3_state_t) >= sizeof(XXH64_state_t) && sizeof(XXH3_state_t) >= sizeof(XXH32_state_t),
               "the state buffer must hold every xxHash state");
#define STATE_BYTES (STATE_HEADER_BYTES + STATE_ALIGN - 1 + STATE_STRUCT_BYTES)

/* libxxhash's default secret, as XXH3_64bits_reset stores it: a sanity check of XXH3 states. */
static const unsigned char *default_xxh3_secret = NULL;

static void *state_struct(napi_env env, napi_value value, uint32_t magic, bool init) {
  uint8_t *bytes = NULL;
  size_t length = 0;
  if (!get_bytes(env, value, "state", &bytes, &length)) return NULL;
  if (length < STATE_BYTES) {
    char message[128];
    snprintf(message, sizeof message, "state must be at least %zu bytes (hashStateBytes)", (size_t)STATE_BYTES);
    throw_range_error(env, message);
    return NULL;
  }
  uintptr_t base = (uintptr_t)bytes;
  uint32_t aligned_offset =
      (uint32_t)(((base + STATE_HEADER_BYTES + STATE_ALIGN - 1) & ~(uintptr_t)(STATE_ALIGN - 1)) - base);
  if (init) {
    memcpy(bytes, &magic, 4);
    memcpy(bytes + 4, &aligned_offset, 4);
    return bytes + aligned_offset;
  }
  uint32_t stored_magic = 0, stored_offset = 0;
  memcpy(&stored_magic, bytes, 4);
  memcpy(&stored_offset, bytes + 4, 4);
  if (stored_magic != magic || stored_offset < STATE_HEADER_BYTES ||
      stored_offset > STATE_HEADER_BYTES + STATE_ALIGN - 1) {
    throw_error(env, "ERR_PGBACULA_HASH_STATE",
                magic == STATE_MAGIC_XXH3    ? "state was not initialized by xxh3Init"
                : magic == STATE_MAGIC_XXH64 ? "state was not initialized by xxh64Init"
                                             : "state was not initialized by xxh32Init");
    return NULL;
  }
  if (stored_offset != aligned_offset) {
    memmove(bytes + aligned_offset, bytes + stored_offset, STATE_STRUCT_BYTES);
    memcpy(bytes + 4, &aligned_offset, 4);
  }
  void *state = bytes + aligned_offset;
  if (magic == STATE_MAGIC_XXH3 && ((XXH3_state_t *)state)->extSecret != default_xxh3_secret) {
    throw_error(env, "ERR_PGBACULA_HASH_STATE", "xxh3 state is damaged or comes from another process");
    return NULL;
  }
  return state;
}

/* xxh3Init(state) / xxh64Init(state, seed = 0n): (re)start a hash in the caller's state buffer. */
static napi_value xxh3_init(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "xxh3Init(state) needs a state buffer");
  STATE_ARG(XXH3_state_t, state, argv[0], STATE_MAGIC_XXH3, true);
  XXH3_64bits_reset(state);
  return NULL;
}

static napi_value xxh64_init(napi_env env, napi_callback_info info) {
  ARGS(2, 1, "xxh64Init(state[, seed]) needs a state buffer");
  uint64_t seed = 0;
  if (argc >= 2 && !get_optional_u64(env, argv[1], "seed", &seed)) return NULL;
  STATE_ARG(XXH64_state_t, state, argv[0], STATE_MAGIC_XXH64, true);
  XXH64_reset(state, seed);
  return NULL;
}

static napi_value xxh3_update(napi_env env, napi_callback_info info) {
  ARGS(2, 2, "xxh3Update(state, data) needs state and data");
  BYTES_ARG(data, argv[1], "data");
  STATE_ARG(XXH3_state_t, state, argv[0], STATE_MAGIC_XXH3, false);
  PGB_XXH3_UPDATE(state, data.data, data.length);
  return NULL;
}

static napi_value xxh64_update(napi_env env, napi_callback_info info) {
  ARGS(2, 2, "xxh64Update(state, data) needs state and data");
  BYTES_ARG(data, argv[1], "data");
  STATE_ARG(XXH64_state_t, state, argv[0], STATE_MAGIC_XXH64, false);
  XXH64_update(state, data.data, data.length);
  return NULL;
}

/* xxh3Digest(state) / xxh64Digest(state) → the hash so far; the state may be updated further. */
static napi_value xxh3_digest(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "xxh3Digest(state) needs a state buffer");
  STATE_ARG(XXH3_state_t, state, argv[0], STATE_MAGIC_XXH3, false);
  return make_u64(env, XXH3_64bits_digest(state));
}

static napi_value xxh64_digest(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "xxh64Digest(state) needs a state buffer");
  STATE_ARG(XXH64_state_t, state, argv[0], STATE_MAGIC_XXH64, false);
  return make_u64(env, XXH64_digest(state));
}

/* xxh32Init(state, seed = 0) / xxh32Update(state, data) / xxh32Digest(state) → number: the LZ4
 * frame content checksum over a content that arrives block by block. */
static napi_value xxh32_init(napi_env env, napi_callback_info info) {
  ARGS(2, 1, "xxh32Init(state[, seed]) needs a state buffer");
  uint32_t seed = 0;
  if (argc >= 2 && !get_optional_u32(env, argv[1], "seed", 0, &seed)) return NULL;
  STATE_ARG(XXH32_state_t, state, argv[0], STATE_MAGIC_XXH32, true);
  XXH32_reset(state, seed);
  return NULL;
}

static napi_value xxh32_update(napi_env env, napi_callback_info info) {
  ARGS(2, 2, "xxh32Update(state, data) needs state and data");
  BYTES_ARG(data, argv[1], "data");
  STATE_ARG(XXH32_state_t, state, argv[0], STATE_MAGIC_XXH32, false);
  XXH32_update(state, data.data, data.length);
  return NULL;
}

static napi_value xxh32_digest(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "xxh32Digest(state) needs a state buffer");
  STATE_ARG(XXH32_state_t, state, argv[0], STATE_MAGIC_XXH32, false);
  return make_u32(env, XXH32_digest(state));
}

/* ---- page checksums ---------------------------------------------------------------------------- */

/* pageChecksum(page, blkno): what PostgreSQL stores in pd_checksum for this page as block blkno. */
static napi_value page_checksum(napi_env env, napi_callback_info info) {
  ARGS(2, 2, "pageChecksum(page, blkno) needs two arguments");
  BYTES_ARG(page, argv[0], "page");
  uint32_t blkno = 0;
  if (!get_optional_u32(env, argv[1], "blkno", 0, &blkno)) return NULL;
  if (page.length == 0 || page.length % 128 != 0 || page.length > 32768 || ((uintptr_t)page.data & 3) != 0) {
    FAIL(throw_range_error(env, "page must be a 4-byte aligned block of 128-byte rows (at most 32 KiB)"));
  }
  return make_u32(env, pgb_page_checksum(page.data, (uint32_t)page.length, blkno));
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  pgb_verify_job job;
  int rc;
} verify_call_t;

static void verify_call_free(verify_call_t *call) {
  if (call == NULL) return;
  for (uint32_t i = 0; i < call->job.path_count; i++) free(call->job.paths[i]);
  free(call->job.paths);
  free(call->job.ranges);
  pthread_mutex_destroy(&call->job.lock);
  free(call);
}

static void verify_execute(napi_env env, void *data) {
  verify_call_t *call = data;
  call->rc = pgb_verify_run(&call->job);
}

/* Settles the promise of a verifyRanges call with an Error of this text. */
static void reject_with(napi_env env, napi_deferred deferred, const char *text) {
  napi_value message = NULL, error = NULL;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  napi_reject_deferred(env, deferred, error);
}

static void verify_complete(napi_env env, napi_status status, void *data) {
  verify_call_t *call = data;
  napi_value result = NULL;
  if (status != napi_ok || call->rc != 0) {
    char text[128];
    snprintf(text, sizeof text, "pgbacula kernels: verifyRanges failed (%s)", call->rc != 0 ? strerror(call->rc) : "the work was cancelled");
    reject_with(env, call->deferred, text);
  } else {
    pgb_verify_job *job = &call->job;
    napi_create_object(env, &result);
    set_f64(env, result, "pages", (double)job->totals.pages);
    set_f64(env, result, "newPages", (double)job->totals.new_pages);
    set_f64(env, result, "tornPages", (double)job->totals.torn_pages);
    set_f64(env, result, "bytes", (double)job->totals.bytes);
    set_u32(env, result, "failuresDropped", job->failures_dropped);
    set_u32(env, result, "problemsDropped", job->problems_dropped);
    napi_value failures = NULL;
    napi_create_array_with_length(env, job->failure_count, &failures);
    for (uint32_t i = 0; i < job->failure_count; i++) {
      napi_value f = NULL;
      napi_create_object(env, &f);
      set_u32(env, f, "file", job->failures[i].file);
      set_u32(env, f, "blkno", job->failures[i].blkno);
      set_u32(env, f, "stored", job->failures[i].stored);
      set_u32(env, f, "computed", job->failures[i].computed);
      napi_set_element(env, failures, i, f);
    }
    napi_set_named_property(env, result, "failures", failures);
    napi_value problems = NULL;
    napi_create_array_with_length(env, job->problem_count, &problems);
    for (uint32_t i = 0; i < job->problem_count; i++) {
      napi_value p = NULL, code = NULL, vanished = NULL;
      napi_create_object(env, &p);
      set_u32(env, p, "file", job->problems[i].file);
      napi_create_string_utf8(env, strerror(job->problems[i].err), NAPI_AUTO_LENGTH, &code);
      napi_set_named_property(env, p, "error", code);
      napi_get_boolean(env, job->problems[i].vanished != 0, &vanished);
      napi_set_named_property(env, p, "vanished", vanished);
      napi_set_element(env, problems, i, p);
    }
    napi_set_named_property(env, result, "problems", problems);
    napi_resolve_deferred(env, call->deferred, result);
  }
  napi_delete_async_work(env, call->work);
  verify_call_free(call);
}

/*
 * verifyRanges(paths, ranges, blockSize, threads) → Promise<{pages, newPages, tornPages, bytes,
 * failures: [{file, blkno, stored, computed}], failuresDropped, problems: [{file, error, vanished}]}>
 * `ranges`: Float64Array of (file index, first block number of the file, offset, length) quads.
 * Runs off the JS thread; the JS thread stays free for progress and signals.
 */
/* Frees the call that could not be started, throws, and returns from verify_ranges. */
#define ABANDON(throw_call)                                                                         \
  do {                                                                                              \
    verify_call_free(call);                                                                         \
    FAIL(throw_call);                                                                               \
  } while (0)
#define OUT_OF_MEMORY throw_error(env, "ERR_PGBACULA_KERNELS", "pgbacula kernels: out of memory")

static napi_value verify_ranges(napi_env env, napi_callback_info info) {
  ARGS(4, 4, "verifyRanges(paths, ranges, blockSize, threads) needs four arguments");
  bool is_array = false;
  CHECK_NAPI(napi_is_array(env, argv[0], &is_array));
  if (!is_array) FAIL(throw_type_error(env, "paths must be an array of strings"));
  uint32_t block_size = 0, threads = 0;
  if (!get_optional_u32(env, argv[2], "blockSize", 8192, &block_size)) return NULL;
  if (!get_optional_u32(env, argv[3], "threads", 1, &threads)) return NULL;
  if (block_size < 1024 || block_size > 32768 || (block_size & (block_size - 1)) != 0) {
    FAIL(throw_range_error(env, "blockSize must be a power of two from 1024 to 32768"));
  }
  bool is_typedarray = false;
  napi_typedarray_type type;
  size_t count = 0;
  void *raw = NULL;
  CHECK_NAPI(napi_is_typedarray(env, argv[1], &is_typedarray));
  if (!is_typedarray || napi_get_typedarray_info(env, argv[1], &type, &count, &raw, NULL, NULL) != napi_ok || type != napi_float64_array || count % 4 != 0) {
    FAIL(throw_type_error(env, "ranges must be a Float64Array of (file, firstBlkno, offset, length) quads"));
  }
  verify_call_t *call = calloc(1, sizeof *call);
  if (call == NULL) FAIL(OUT_OF_MEMORY);
  pthread_mutex_init(&call->job.lock, NULL);
  uint32_t path_count = 0;
  if (napi_get_array_length(env, argv[0], &path_count) != napi_ok) ABANDON(throw_last_error(env, "napi_get_array_length"));
  call->job.paths = calloc(path_count == 0 ? 1 : path_count, sizeof(char *));
  call->job.ranges = calloc(count / 4 == 0 ? 1 : count / 4, sizeof(pgb_verify_range));
  if (call->job.paths == NULL || call->job.ranges == NULL) ABANDON(OUT_OF_MEMORY);
  call->job.path_count = path_count;
  for (uint32_t i = 0; i < path_count; i++) {
    napi_value element = NULL;
    size_t length = 0;
    if (napi_get_element(env, argv[0], i, &element) != napi_ok || napi_get_value_string_utf8(env, element, NULL, 0, &length) != napi_ok) {
      ABANDON(throw_type_error(env, "paths must be an array of strings"));
    }
    call->job.paths[i] = malloc(length + 1);
    if (call->job.paths[i] == NULL) ABANDON(OUT_OF_MEMORY);
    napi_get_value_string_utf8(env, element, call->job.paths[i], length + 1, &length);
  }
  const double *quads = raw;
  call->job.range_count = (uint32_t)(count / 4);
  for (uint32_t i = 0; i < call->job.range_count; i++) {
    double file = quads[4 * i], first = quads[4 * i + 1], offset = quads[4 * i + 2], length = quads[4 * i + 3];
    /* Written so that NaN fails every test. */
    if (!(file >= 0 && file < path_count && first >= 0 && first <= 4294967294.0 && offset >= 0 && offset < 9.0e15 && length >= 0 && length < 9.0e15) ||
        (uint64_t)offset % block_size != 0) {
      ABANDON(throw_range_error(env, "a range names no file, or its offset is not a block boundary"));
    }
    call->job.ranges[i] = (pgb_verify_range){(uint32_t)file, (uint32_t)first, (uint64_t)offset, (uint64_t)length};
  }
  call->job.block_size = block_size;
  call->job.threads = threads;
  napi_value promise = NULL, name = NULL;
  if (napi_create_promise(env, &call->deferred, &promise) != napi_ok) ABANDON(throw_last_error(env, "napi_create_promise"));
  if (napi_create_string_utf8(env, "pgbacula.verifyRanges", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, verify_execute, verify_complete, call, &call->work) != napi_ok) {
    reject_with(env, call->deferred, "pgbacula kernels: verifyRanges could not be queued");
    verify_call_free(call);
    return promise;
  }
  if (napi_queue_async_work(env, call->work) != napi_ok) {
    reject_with(env, call->deferred, "pgbacula kernels: verifyRanges could not be queued");
    napi_delete_async_work(env, call->work);
    verify_call_free(call);
  }
  return promise;
}
#undef ABANDON
#undef OUT_OF_MEMORY

/* ---- directory walk -------------------------------------------------------------------------- */

/* A typed array of `count` elements of `type` holding a copy of `data` (`bytes` bytes). */
static bool copy_typed(napi_env env, napi_typedarray_type type, size_t count, const void *data, size_t bytes, napi_value *out) {
  void *raw = NULL;
  napi_value buffer = NULL;
  if (napi_create_arraybuffer(env, bytes, &raw, &buffer) != napi_ok) return false;
  if (bytes > 0) memcpy(raw, data, bytes);
  return napi_create_typedarray(env, type, count, buffer, 0, out) == napi_ok;
}

/*
 * walkDir(path) → { names, kinds, sizes, modes, mtimes, links }: the entries of one directory,
 * sorted by name, names joined by NUL, as workers/walk-dir.ts returns them. Throws an Error with
 * the errno's name as `code` (a directory that does not exist lists as empty).
 */
static napi_value walk_dir(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "walkDir(path) needs a path");
  size_t length = 0;
  if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &length) != napi_ok) FAIL(throw_type_error(env, "walkDir: path must be a string"));
  char *path = malloc(length + 1);
  if (path == NULL) FAIL(throw_error(env, "ENOMEM", "walkDir: out of memory"));
  napi_get_value_string_utf8(env, argv[0], path, length + 1, &length);
  pgb_walked_dir d;
  int error = pgb_walk_dir(path, &d);
  if (error != 0) {
    char message[4096 + 512];
    snprintf(message, sizeof message, "%s: %s, %s '%s%s%s'", pgb_errno_name(error), strerror(error), d.error_name[0] ? "lstat" : "scandir", path,
             d.error_name[0] ? "/" : "", d.error_name);
    free(path);
    throw_error(env, pgb_errno_name(error), message);
    return NULL;
  }
  free(path);
  napi_value result = NULL, names = NULL, kinds = NULL, sizes = NULL, modes = NULL, mtimes = NULL, links = NULL;
  bool made = napi_create_object(env, &result) == napi_ok &&
              napi_create_string_utf8(env, d.names, d.names_bytes > 0 ? d.names_bytes - 1 : 0, &names) == napi_ok &&
              copy_typed(env, napi_uint8_array, d.count, d.kinds, d.count * sizeof *d.kinds, &kinds) &&
              copy_typed(env, napi_float64_array, d.count, d.sizes, d.count * sizeof *d.sizes, &sizes) &&
              copy_typed(env, napi_uint16_array, d.count, d.modes, d.count * sizeof *d.modes, &modes) &&
              copy_typed(env, napi_float64_array, d.count, d.mtimes, d.count * sizeof *d.mtimes, &mtimes) &&
              napi_create_object(env, &links) == napi_ok;
  for (uint32_t i = 0; made && i < d.count; i++) {
    if (d.links[i] == NULL) continue;
    napi_value target = NULL;
    made = napi_create_string_utf8(env, d.links[i], NAPI_AUTO_LENGTH, &target) == napi_ok && napi_set_element(env, links, i, target) == napi_ok;
  }
  made = made && napi_set_named_property(env, result, "names", names) == napi_ok && napi_set_named_property(env, result, "kinds", kinds) == napi_ok &&
         napi_set_named_property(env, result, "sizes", sizes) == napi_ok && napi_set_named_property(env, result, "modes", modes) == napi_ok &&
         napi_set_named_property(env, result, "mtimes", mtimes) == napi_ok && napi_set_named_property(env, result, "links", links) == napi_ok;
  pgb_walked_dir_free(&d);
  if (!made) {
    throw_last_error(env, "walkDir");
    return NULL;
  }
  return result;
}

/* ---- durability of a restored file system ------------------------------------------------------ */

/*
 * A restore writes thousands of files; an fsync of each forces the disk in turn, one file at a
 * time, while the page cache could take the next writes. Instead each file's dirty pages are sent
 * to the disk as it is written (startWriteback: sync_file_range WRITE, which waits for nothing but
 * a free request slot), and the restore ends its lay-down with one syncfs per file system it wrote
 * to, which waits for every page and inode, directories included, and reports a writeback error
 * since the descriptor was opened (Linux 5.8 and later).
 */

/* startWriteback(fd, offset, length): start writing the range's dirty pages (length 0: to the end). */
static napi_value start_writeback(napi_env env, napi_callback_info info) {
  ARGS(3, 3, "startWriteback(fd, offset, length) needs three numbers");
  int32_t fd = -1;
  int64_t offset = 0, length = 0;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || fd < 0 || offset < 0 || length < 0)
    FAIL(throw_type_error(env, "startWriteback: fd, offset and length must be non-negative numbers"));
  while (sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE) != 0) {
    if (errno == EINTR) continue;
    int error = errno;
    char message[256];
    snprintf(message, sizeof message, "%s: %s, sync_file_range", pgb_errno_name(error), strerror(error));
    FAIL(throw_error(env, pgb_errno_name(error), message));
  }
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int error;
} syncfs_call_t;

static void syncfs_execute(napi_env env, void *data) {
  syncfs_call_t *call = data;
  call->error = syncfs(call->fd) == 0 ? 0 : errno;
}

static void syncfs_complete(napi_env env, napi_status status, void *data) {
  syncfs_call_t *call = data;
  if (status == napi_ok && call->error == 0) {
    napi_value undefined = NULL;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, call->deferred, undefined);
  } else {
    int error = status == napi_ok ? call->error : ECANCELED;
    char text[256];
    snprintf(text, sizeof text, "%s: %s, syncfs", pgb_errno_name(error), strerror(error));
    napi_value message = NULL, code = NULL, err = NULL;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
    napi_create_string_utf8(env, pgb_errno_name(error), NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, message, &err);
    napi_reject_deferred(env, call->deferred, err);
  }
  napi_delete_async_work(env, call->work);
  free(call);
}

/* syncFileSystem(fd) → Promise: syncfs of the file system holding fd, on libuv's pool. */
static napi_value sync_file_system(napi_env env, napi_callback_info info) {
  ARGS(1, 1, "syncFileSystem(fd) needs a descriptor");
  int32_t fd = -1;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) FAIL(throw_type_error(env, "syncFileSystem: fd must be a descriptor"));
  syncfs_call_t *call = calloc(1, sizeof *call);
  if (call == NULL) FAIL(throw_error(env, "ENOMEM", "syncFileSystem: out of memory"));
  call->fd = fd;
  napi_value promise = NULL, name = NULL;
  if (napi_create_promise(env, &call->deferred, &promise) != napi_ok) {
    free(call);
    throw_last_error(env, "napi_create_promise");
    return NULL;
  }
  if (napi_create_string_utf8(env, "pgbacula:syncFileSystem", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, syncfs_execute, syncfs_complete, call, &call->work) != napi_ok) {
    reject_with(env, call->deferred, "pgbacula kernels: syncFileSystem could not be queued");
    free(call);
    return promise;
  }
  if (napi_queue_async_work(env, call->work) != napi_ok) {
    reject_with(env, call->deferred, "pgbacula kernels: syncFileSystem could not be queued");
    napi_delete_async_work(env, call->work);
    free(call);
  }
  return promise;
}

/* ---- module ---------------------------------------------------------------------------------- */

#define FUNCTION(js_name, c_function) {js_name, NULL, c_function, NULL, NULL, NULL, napi_enumerable, NULL}

NAPI_MODULE_INIT() {
  if (default_xxh3_secret == NULL) {
    /* Same value in every thread; a benign race. */
    XXH3_state_t probe;
    XXH3_64bits_reset(&probe);
    default_xxh3_secret = probe.extSecret;
  }

  instance_t *instance = calloc(1, sizeof *instance);
  if (instance == NULL || (instance->lz4_state = malloc((size_t)LZ4_sizeofState())) == NULL) {
    free(instance);
    napi_throw_error(env, "ERR_PGBACULA_KERNELS", "pgbacula kernels: out of memory for the LZ4 state");
    return NULL;
  }
  if (napi_set_instance_data(env, instance, instance_finalize, NULL) != napi_ok) {
    instance_finalize(env, instance, NULL);
    throw_last_error(env, "napi_set_instance_data");
    return NULL;
  }

  napi_property_descriptor functions[] = {
      FUNCTION("lz4CompressBound", lz4_compress_bound),
      FUNCTION("lz4CompressBlock", lz4_compress_block),
      FUNCTION("lz4DecompressBlock", lz4_decompress_block),
      FUNCTION("xxh3", xxh3),
      FUNCTION("xxh64", xxh64),
      FUNCTION("xxh32", xxh32),
      FUNCTION("xxh3Init", xxh3_init),
      FUNCTION("xxh3Update", xxh3_update),
      FUNCTION("xxh3Digest", xxh3_digest),
      FUNCTION("xxh64Init", xxh64_init),
      FUNCTION("xxh64Update", xxh64_update),
      FUNCTION("xxh64Digest", xxh64_digest),
      FUNCTION("xxh32Init", xxh32_init),
      FUNCTION("xxh32Update", xxh32_update),
      FUNCTION("xxh32Digest", xxh32_digest),
      FUNCTION("pageChecksum", page_checksum),
      FUNCTION("verifyRanges", verify_ranges),
      FUNCTION("walkDir", walk_dir),
      FUNCTION("startWriteback", start_writeback),
      FUNCTION("syncFileSystem", sync_file_system),
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) {
    throw_last_error(env, "napi_define_properties");
    return NULL;
  }
  if (!set_u32(env, exports, "abiVersion", KERNELS_ABI_VERSION) ||
      !set_u32(env, exports, "hashStateBytes", (uint32_t)STATE_BYTES) ||
      !set_u32(env, exports, "lz4VersionNumber", (uint32_t)LZ4_versionNumber()) ||
      !set_u32(env, exports, "xxhashVersionNumber", (uint32_t)XXH_versionNumber())) {
    throw_last_error(env, "napi_set_named_property");
    return NULL;
  }
  return exports;
}
