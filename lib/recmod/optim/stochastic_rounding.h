#pragma once
// Stochastic rounding of float32 values to a 16-bit table type (bf16, fp16),
// FBGEMM's `stochastic_rounding` for low-precision embedding tables: a value
// between two neighbours rounds up (away from zero) with probability equal
// to its distance from the one nearer zero over the gap, so the expected
// stored value is the value itself. Updates smaller than half a unit in the
// last place, which rounding to nearest drops every time, then move the row
// on average.
//
// The random bits are a function of (seed, step, row, column) only, so a run
// is deterministic under its seed whatever the thread count, and a shard
// that passes its global row and column gets the whole table's bits. One
// splitmix64 finalizer gives the 64 bits of a group of 4 columns
// [4k, 4k + 4): column c takes the 16-bit lane c % 4 of group c / 4. The
// rounding itself is integer arithmetic on the float's bits (bf16: add the
// 16 random bits to the bits that bf16 drops and truncate; fp16: the same
// with the 13 bits it drops from a normal float), exact: the probability of
// rounding up is exactly the dropped bits' share of the gap. Header-only; a
// table's `stochastic_rounding: true` uses it through row_update.h's
// RowRounding (docs/quantization.md).
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace recmod::optim {

namespace detail {

/// splitmix64's finalizer.
inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint32_t float_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

inline float bits_float(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

template <typename weight_t>
inline weight_t from_bits16(uint16_t bits) {
  weight_t out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace detail

/// The random stream of update `step` of a run seeded `seed`.
inline uint64_t stochastic_rounding_stream(uint64_t seed, uint64_t step) {
  return detail::mix64(detail::mix64(seed) ^ step);
}

/// The stream of one (global) row of a table within a step's stream.
inline uint64_t stochastic_rounding_row(uint64_t stream, uint64_t row) { return detail::mix64(stream ^ row); }

/// 64 random bits for the columns [4 * group, 4 * group + 4) of a row:
/// column c takes bits [16 * (c % 4), 16 * (c % 4) + 16).
inline uint64_t stochastic_rounding_group(uint64_t row_stream, uint64_t group) {
  return detail::mix64(row_stream ^ group);
}

/// The 16 random bits of element (row, column) at update `step` of a run
/// seeded `seed` (what the row kernels draw, one group at a time).
inline uint16_t stochastic_rounding_bits(uint64_t seed, uint64_t step, uint64_t row, uint64_t column) {
  const uint64_t group = stochastic_rounding_group(
      stochastic_rounding_row(stochastic_rounding_stream(seed, step), row), column / 4);
  return static_cast<uint16_t>(group >> (16 * (column % 4)));
}

/// `x` rounded to `weight_t` (c10::BFloat16 or c10::Half) stochastically
/// with the 16 random bits `random`: away from zero when the bits the type
/// drops plus `random` carry into the kept ones, i.e. with probability (the
/// dropped part) / (the gap). Exact values stay; NaN, infinities and values
/// in the top gap below infinity round to nearest. fp16 subnormals (|x| <
/// 2^-14, gap 2^-24) round up with probability floor(2^16 * share) / 2^16.
template <typename weight_t>
inline weight_t round_stochastic(float x, uint16_t random) {
  static_assert(sizeof(weight_t) == 2, "round_stochastic: a 16-bit table type (c10::BFloat16, c10::Half)");
  const uint32_t b = detail::float_bits(x);
  const uint32_t magnitude = b & 0x7fffffffu;
  if constexpr (std::is_same_v<weight_t, c10::BFloat16>) {
    // bf16 keeps the high 16 bits; 0x7f7f.... is the top finite gap
    if (magnitude >= 0x7f7f0000u) return weight_t(x);
    return detail::from_bits16<weight_t>(static_cast<uint16_t>((b + random) >> 16));
  } else {
    if (magnitude >= 0x477fe000u) return weight_t(x);  // |x| >= 65504 (the largest half), inf, NaN
    if (magnitude >= 0x38800000u) {                    // |x| >= 2^-14: a normal half keeps 10 of 23 bits
      const uint32_t kept = (b + (static_cast<uint32_t>(random) >> 3)) & ~uint32_t{0x1fff};
      return weight_t(detail::bits_float(kept));  // exact: a half value
    }
    // Subnormal halves: multiples of 2^-24.
    const float q = std::fabs(x) * 16777216.0f;  // exact
    const float whole = std::floor(q);
    const auto share = static_cast<uint32_t>((q - whole) * 65536.0f);
    const float up = whole + (random < share ? 1.0f : 0.0f);
    return weight_t(std::copysign(up * (1.0f / 16777216.0f), x));  // exact
  }
}

/// Stores n values `v` of one row as weight_t, rounded stochastically:
/// v[j] is column first_column + j of the row whose stream is `row_stream`.
template <typename weight_t>
inline void store_row_stochastic(const float* v, weight_t* w, int64_t n, uint64_t row_stream, uint64_t first_column) {
  int64_t j = 0;
  while (j < n) {
    const uint64_t c = first_column + static_cast<uint64_t>(j);
    const uint64_t bits = stochastic_rounding_group(row_stream, c / 4);
    const auto lane = static_cast<int>(c % 4);
    if (lane == 0 && j + 4 <= n) {
      w[j] = round_stochastic<weight_t>(v[j], static_cast<uint16_t>(bits));
      w[j + 1] = round_stochastic<weight_t>(v[j + 1], static_cast<uint16_t>(bits >> 16));
      w[j + 2] = round_stochastic<weight_t>(v[j + 2], static_cast<uint16_t>(bits >> 32));
      w[j + 3] = round_stochastic<weight_t>(v[j + 3], static_cast<uint16_t>(bits >> 48));
      j += 4;
      continue;
    }
    const int64_t take = std::min<int64_t>(4 - lane, n - j);
    for (int64_t k = 0; k < take; ++k)
      w[j + k] = round_stochastic<weight_t>(v[j + k], static_cast<uint16_t>(bits >> (16 * (lane + k))));
    j += take;
  }
}

}  // namespace recmod::optim
