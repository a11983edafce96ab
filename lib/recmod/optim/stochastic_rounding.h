#pragma once
// Stochastic rounding of float32 values to a 16-bit table type (bf16, fp16),
// FBGEMM's `stochastic_rounding` for low-precision embedding tables: a value
// between two neighbours rounds up with probability equal to its distance
// from the lower one over the gap, so the expected stored value is the
// value itself. Updates smaller than half a unit in the last place, which
// rounding to nearest drops every time, then move the row on average.
// The random bits are a function of (seed, step, row, element) only, so a
// run is deterministic under its seed whatever the thread count.
// Header-only; a table's `stochastic_rounding: true` uses it through
// row_update.h's RowRounding (docs/quantization.md).
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace recmod::optim {

/// 32 uniform random bits for element `element` of row `row` at update
/// `step` of a run seeded `seed` (splitmix64's finalizer over the four).
inline uint32_t stochastic_rounding_bits(uint64_t seed, uint64_t step, uint64_t row, uint64_t element) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return static_cast<uint32_t>(mix(mix(mix(mix(seed) ^ step) ^ row) ^ element) >> 32);
}

namespace detail {

/// The next representable 16-bit value above (up) or below (!up) `bits`,
/// for a sign-magnitude format (bf16, fp16); -0 and +0 step to the smallest
/// subnormals.
inline uint16_t step_16(uint16_t bits, bool up) {
  const bool negative = (bits & 0x8000u) != 0;
  const uint16_t magnitude = bits & 0x7fffu;
  if (magnitude == 0) return up ? 0x0001u : 0x8001u;
  // Away from zero: magnitude + 1; toward zero: magnitude - 1.
  return (up != negative) ? static_cast<uint16_t>(bits + 1) : static_cast<uint16_t>(bits - 1);
}

}  // namespace detail

/// `x` rounded to `weight_t` (c10::BFloat16 or c10::Half) stochastically with
/// the 32 random bits `random`: the lower neighbour when random / 2^32 >=
/// (x - lower) / (upper - lower), else the upper one. Exact values, NaN,
/// infinities and values whose other neighbour overflows round to nearest.
template <typename weight_t>
inline weight_t round_stochastic(float x, uint32_t random) {
  static_assert(sizeof(weight_t) == 2, "round_stochastic: a 16-bit table type (c10::BFloat16, c10::Half)");
  const weight_t nearest(x);  // round to nearest even
  const float y = static_cast<float>(nearest);
  if (y == x || !std::isfinite(x) || !std::isfinite(y)) return nearest;
  uint16_t bits;
  std::memcpy(&bits, &nearest, sizeof bits);
  const uint16_t other_bits = detail::step_16(bits, /*up=*/y < x);
  weight_t other;
  std::memcpy(&other, &other_bits, sizeof other);
  const float z = static_cast<float>(other);
  if (!std::isfinite(z)) return nearest;
  const float lower = y < x ? y : z;
  const float upper = y < x ? z : y;
  const weight_t& lower_value = y < x ? nearest : other;
  const weight_t& upper_value = y < x ? other : nearest;
  // In double: the distances and their ratio are exact enough for 2^-32 steps.
  const double p_up = (static_cast<double>(x) - lower) / (static_cast<double>(upper) - lower);
  const double u = static_cast<double>(random) * (1.0 / 4294967296.0);
  return u < p_up ? upper_value : lower_value;
}

}  // namespace recmod::optim
