#include "recmod/io/crc32.h"

#include <zlib.h>

#include <algorithm>
#include <climits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RECMOD_CRC32_PCLMUL 1
#endif

namespace recmod::io {

namespace {

uint32_t zlib_crc32(uint32_t crc, const unsigned char* p, size_t n) {
  while (n > 0) {  // zlib takes a uInt length
    const size_t piece = std::min<size_t>(n, UINT_MAX);
    crc = static_cast<uint32_t>(::crc32(crc, p, static_cast<uInt>(piece)));
    p += piece;
    n -= piece;
  }
  return crc;
}

#ifdef RECMOD_CRC32_PCLMUL
// Folding with carry-less multiplication, after Intel's "Fast CRC Computation
// for Generic Polynomials Using PCLMULQDQ Instruction" (2009), with the
// constants for zip's reflected polynomial 0xEDB88320 that Linux uses
// (arch/x86/crypto/crc32-pclmul_asm.S): x^(4*128+32) and x^(4*128-32) mod P
// fold 64 bytes ahead, x^(128+32) and x^(128-32) mod P 16 bytes ahead.
// Instead of a Barrett reduction, the last 16-byte remainder goes through
// zlib: it is a message with the same CRC as everything folded into it.

__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i load(const unsigned char* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

/// n >= 64. Consumes a multiple of 16 bytes (returned in *used).
__attribute__((target("pclmul,sse4.1"))) uint32_t pclmul_crc32(uint32_t crc, const unsigned char* p, size_t n,
                                                                size_t* used) {
  const __m128i k_64 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
  const __m128i k_16 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
  __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(~crc)));
  __m128i x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
  size_t i = 64;
  for (; i + 64 <= n; i += 64) {
    x1 = fold(x1, k_64, load(p + i));
    x2 = fold(x2, k_64, load(p + i + 16));
    x3 = fold(x3, k_64, load(p + i + 32));
    x4 = fold(x4, k_64, load(p + i + 48));
  }
  x1 = fold(fold(fold(x1, k_16, x2), k_16, x3), k_16, x4);
  for (; i + 16 <= n; i += 16) x1 = fold(x1, k_16, load(p + i));
  alignas(16) unsigned char rest[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(rest), x1);
  *used = i;
  return static_cast<uint32_t>(::crc32(0xFFFFFFFFul, rest, 16));
}

bool has_pclmul() {
  static const bool yes = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return yes;
}
#endif

}  // namespace

uint32_t crc32(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
#ifdef RECMOD_CRC32_PCLMUL
  if (n >= 64 && has_pclmul()) {
    size_t used = 0;
    crc = pclmul_crc32(crc, p, n, &used);
    p += used;
    n -= used;
  }
#endif
  return zlib_crc32(crc, p, n);
}

}  // namespace recmod::io
