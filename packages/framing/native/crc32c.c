/*
 * CRC-32C (Castagnoli) of many event frames in one call, for @sluice/framing.
 *
 * A frame of a 100-byte event is ~180 bytes: in JavaScript its CRC costs 140-180 ns, through a
 * per-range native call (@node-rs/crc32) 120-140 ns, nearly all of it the call itself. Here one
 * call checksums every frame of a group (~20 ns each): SSE 4.2 CRC32 instructions when the CPU
 * has them (checked once per process), slicing-by-8 tables otherwise.
 *
 * stampFrameCrcs(buffer: Uint8Array, offsets: Uint32Array, count: number): undefined
 *   For each of the first `count` offsets o: the frame at o is `length` bytes (u32 LE at o,
 *   including its 4-byte trailer); writes the CRC-32C of [o, o + length - 4) as u32 LE at
 *   o + length - 4. The frames must be in ascending order and must not overlap. Throws a
 *   RangeError, writing nothing, when one is shorter than 8 bytes, runs past the buffer or
 *   overlaps the one before it.
 * verifyFrames(buffer: Uint8Array, start: number, end: number, frameBytesMin: number, frameBytesMax: number): number
 *   Walks the frames from `start` (each `length` bytes, u32 LE at its start) and returns where the
 *   run of whole frames whose trailer holds the CRC-32C of the bytes before it ends: at the
 *   first frame that fails its CRC, has a length outside [frameBytesMin, frameBytesMax], or runs
 *   past `end`. Reads only, never writes.
 * hardware: boolean
 */
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define SLUICE_X86 1
#endif

static uint32_t table[8][256];
static int hardware = 0;
/* Worker threads load the addon too: the tables and the CPU check are set up once per process. */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    table[0][n] = c;
  }
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = table[0][n];
    for (int k = 1; k < 8; k++) {
      c = table[0][c & 0xff] ^ (c >> 8);
      table[k][n] = c;
    }
  }
}

static uint32_t load32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void store32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* Unconditioned in and out: the caller applies the standard pre- and post-inversion. */
static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n) {
  while (n >= 8) {
    uint32_t lo = c ^ load32(p);
    uint32_t hi = load32(p + 4);
    c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
        table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#ifdef SLUICE_X86
__attribute__((target("sse4.2"))) static uint32_t crc_hard(uint32_t c, const uint8_t *p, size_t n) {
#if defined(__x86_64__)
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
#endif
  while (n--) c = _mm_crc32_u8(c, *p++);
  return c;
}
#endif

static uint32_t crc_range(uint32_t crc, const uint8_t *p, size_t n) {
  uint32_t c = ~crc;
#ifdef SLUICE_X86
  if (hardware) return ~crc_hard(c, p, n);
#endif
  return ~crc_soft(c, p, n);
}

/* Any failed N-API call leaves a JavaScript exception, never a silent undefined. */
static napi_value fail(napi_env env, const char *message) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && !pending) napi_throw_type_error(env, NULL, message);
  return NULL;
}

#define CHECK(call) \
  do { \
    if ((call) != napi_ok) return fail(env, "[sluice/framing] native crc32c: invalid arguments"); \
  } while (0)

/* The elements of a typed array of `want` type, or 0 with a TypeError saying `message`. */
static int typed_array_of(napi_env env, napi_value value, napi_typedarray_type want, const char *message, void **data, size_t *count) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, count, data, &buffer, &offset) != napi_ok || type != want) {
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

/* The call's first `want` arguments, the first of them a Uint8Array: 0 (with an exception) when missing or not. */
static int args_with_bytes(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage, uint8_t **data, size_t *length) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    fail(env, "[sluice/framing] native crc32c: invalid arguments");
    return 0;
  }
  if (argc < want) {
    fail(env, usage);
    return 0;
  }
  return typed_array_of(env, argv[0], napi_uint8_array, "[sluice/framing] native crc32c: expected a Uint8Array", (void **)data, length);
}

static napi_value stamp_frame_crcs(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint8_t *data;
  size_t length;
  if (!args_with_bytes(env, info, 3, argv, "[sluice/framing] native crc32c: stampFrameCrcs(bytes, offsets, count)", &data, &length)) return NULL;
  size_t count;
  void *base;
  if (!typed_array_of(env, argv[1], napi_uint32_array, "[sluice/framing] native crc32c: offsets must be a Uint32Array", &base, &count)) return NULL;
  uint32_t n;
  if (napi_get_value_uint32(env, argv[2], &n) != napi_ok) return fail(env, "[sluice/framing] native crc32c: count must be a number");
  if (n > count) {
    napi_throw_range_error(env, NULL, "[sluice/framing] native crc32c: count must be at most the offsets' length");
    return NULL;
  }
  const uint32_t *offsets = (const uint32_t *)base;
  const uint8_t *offsets_start = (const uint8_t *)base;
  const uint8_t *offsets_end = offsets_start + (size_t)count * 4;
  if (offsets_start < data + length && data < offsets_end) {
    napi_throw_range_error(env, NULL, "[sluice/framing] native crc32c: offsets must not share memory with the bytes");
    return NULL;
  }
  /* Check every frame first: a bad one writes nothing. Ascending and non-overlapping, so no
   * trailer written below can change a length read here. */
  uint64_t next = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t o = offsets[i];
    if (o < next || o + 4 > length) goto bad;
    uint64_t frame = load32(data + o);
    if (frame < 8 || o + frame > length) goto bad;
    next = o + frame;
  }
  for (uint32_t i = 0; i < n; i++) {
    uint32_t o = offsets[i];
    uint32_t frame = load32(data + o);
    store32(data + o + frame - 4, crc_range(0, data + o, frame - 4));
  }
  return NULL;
bad:
  napi_throw_range_error(env, NULL, "[sluice/framing] native crc32c: a frame runs past the buffer, is shorter than 8 bytes, or overlaps the one before it");
  return NULL;
}

static napi_value verify_frames(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint8_t *data;
  size_t length;
  if (!args_with_bytes(env, info, 5, argv, "[sluice/framing] native crc32c: verifyFrames(bytes, start, end, frameBytesMin, frameBytesMax)", &data, &length)) return NULL;
  int64_t start, end;
  uint32_t min, max;
  CHECK(napi_get_value_int64(env, argv[1], &start));
  CHECK(napi_get_value_int64(env, argv[2], &end));
  CHECK(napi_get_value_uint32(env, argv[3], &min));
  CHECK(napi_get_value_uint32(env, argv[4], &max));
  if (start < 0 || end < start || (uint64_t)end > length) {
    napi_throw_range_error(env, NULL, "[sluice/framing] native crc32c: range outside the buffer");
    return NULL;
  }
  if (min < 8) min = 8;
  uint64_t o = (uint64_t)start;
  while ((uint64_t)end - o >= 4) {
    uint64_t frame = load32(data + o);
    if (frame < min || frame > max || frame > (uint64_t)end - o) break;
    if (crc_range(0, data + o, (size_t)frame - 4) != load32(data + o + frame - 4)) break;
    o += frame;
  }
  napi_value result;
  CHECK(napi_create_double(env, (double)o, &result));
  return result;
}

static void init_once(void) {
  init_tables();
#ifdef SLUICE_X86
  __builtin_cpu_init();
  hardware = __builtin_cpu_supports("sse4.2");
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  pthread_once(&once, init_once);
  napi_value fn;
  CHECK(napi_create_function(env, "stampFrameCrcs", NAPI_AUTO_LENGTH, stamp_frame_crcs, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "stampFrameCrcs", fn));
  CHECK(napi_create_function(env, "verifyFrames", NAPI_AUTO_LENGTH, verify_frames, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "verifyFrames", fn));
  napi_value hw;
  CHECK(napi_get_boolean(env, hardware != 0, &hw));
  CHECK(napi_set_named_property(env, exports, "hardware", hw));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
