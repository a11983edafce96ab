// Stochastic rounding to bf16 / fp16 (optim/stochastic_rounding.h).
#include "recmod/optim/stochastic_rounding.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace recmod::optim {
namespace stochastic_rounding_test {

/// The fraction of n draws (rows 0..n-1 of seed 7) that round x up.
template <typename weight_t>
double fraction_rounded_up(float x, int n = 20000) {
  int up = 0;
  for (int i = 0; i < n; ++i) up += static_cast<float>(round_stochastic<weight_t>(x, stochastic_rounding_bits(7, 0, i, 0))) > x;
  return static_cast<double>(up) / n;
}

TEST(StochasticRounding, RoundsUpWithTheValuesShareOfTheGap) {
  const float bf16_ulp = std::ldexp(1.0f, -7);  // bf16's gap above 1
  const float fp16_ulp = std::ldexp(1.0f, -10);
  const float tiny = std::ldexp(1.0f, -24);  // fp16's smallest subnormal
  // sd of a fraction of 20000 draws <= 0.0036: 0.015 is over 4 sd.
  EXPECT_NEAR(fraction_rounded_up<c10::BFloat16>(1.0f + 0.3f * bf16_ulp), 0.3, 0.015);
  EXPECT_NEAR(fraction_rounded_up<c10::BFloat16>(1.0f + 0.8f * bf16_ulp), 0.8, 0.015);
  EXPECT_NEAR(fraction_rounded_up<c10::BFloat16>(-(1.0f + 0.3f * bf16_ulp)), 0.7, 0.015);  // up = toward -1
  EXPECT_NEAR(fraction_rounded_up<c10::Half>(1.0f + 0.1f * fp16_ulp), 0.1, 0.015);
  EXPECT_NEAR(fraction_rounded_up<c10::Half>(0.25f * tiny), 0.25, 0.015);   // between 0 and the first subnormal
  EXPECT_NEAR(fraction_rounded_up<c10::Half>(-0.25f * tiny), 0.75, 0.015);  // between -2^-24 and -0
  // Exact values, infinities, NaN and overflow keep rounding to nearest.
  for (uint16_t r : {uint16_t{0}, uint16_t{0x8000}, uint16_t{0xffff}}) {
    EXPECT_EQ(static_cast<float>(round_stochastic<c10::BFloat16>(1.5f, r)), 1.5f);
    EXPECT_EQ(static_cast<float>(round_stochastic<c10::Half>(-0.0f, r)), 0.0f);
    EXPECT_TRUE(std::isinf(static_cast<float>(round_stochastic<c10::Half>(INFINITY, r))));
    EXPECT_TRUE(std::isnan(static_cast<float>(round_stochastic<c10::BFloat16>(NAN, r))));
    EXPECT_EQ(static_cast<float>(round_stochastic<c10::Half>(65519.0f, r)), 65504.0f);  // the next one up is inf
  }
  // The two extremes of the random bits pick the two neighbours: 0 never
  // carries into the kept bits, 0xffff always does (the dropped part is > 0).
  EXPECT_EQ(static_cast<float>(round_stochastic<c10::BFloat16>(1.0f + 0.5f * bf16_ulp, 0)), 1.0f);
  EXPECT_EQ(static_cast<float>(round_stochastic<c10::BFloat16>(1.0f + 0.5f * bf16_ulp, 0xffff)), 1.0f + bf16_ulp);
  EXPECT_EQ(static_cast<float>(round_stochastic<c10::Half>(-(1.0f + 0.5f * fp16_ulp), 0xffff)), -(1.0f + fp16_ulp));
  // fp16 subnormals: up when the random bits are below the share (2^15 here)
  EXPECT_EQ(static_cast<float>(round_stochastic<c10::Half>(0.5f * tiny, 0x7fff)), tiny);
  EXPECT_EQ(static_cast<float>(round_stochastic<c10::Half>(0.5f * tiny, 0x8000)), 0.0f);
}

/// Rows of a 16-bit table starting at 1, each given `steps` updates of
/// -delta (the update computed in float, the row stored back rounded).
template <typename weight_t>
std::vector<float> updated_rows(int rows, int steps, float delta, bool stochastic, uint64_t seed) {
  std::vector<weight_t> w(rows, weight_t(1.0f));
  for (int step = 0; step < steps; ++step)
    for (int r = 0; r < rows; ++r) {
      const float x = static_cast<float>(w[r]) - delta;
      w[r] = stochastic ? round_stochastic<weight_t>(x, stochastic_rounding_bits(seed, step, r, 0)) : weight_t(x);
    }
  return std::vector<float>(w.begin(), w.end());
}

double mean(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s / static_cast<double>(v.size());
}

template <typename weight_t>
void expect_tiny_updates_move_the_rows_on_average(const char* type) {
  // 1000 updates of -1e-4, each under half the gap at 1 (bf16: 2^-9 below
  // 1, fp16: 2^-12): nearest rounding never moves; the fp32 row ends at
  // 0.9; stochastic rounding's rows average there (sd of the mean over 4096
  // rows about 0.001 for bf16).
  float fp32 = 1.0f;
  for (int step = 0; step < 1000; ++step) fp32 -= 1e-4f;
  const std::vector<float> nearest = updated_rows<weight_t>(4096, 1000, 1e-4f, false, 0);
  const std::vector<float> stochastic = updated_rows<weight_t>(4096, 1000, 1e-4f, true, 42);
  EXPECT_EQ(mean(nearest), 1.0) << type << ": rounding to nearest drops every update";
  EXPECT_NEAR(mean(stochastic), fp32, 0.005) << type;
}

TEST(StochasticRounding, ManyTinyUpdatesAverageTheFp32UpdateWhereNearestRoundingStalls) {
  expect_tiny_updates_move_the_rows_on_average<c10::BFloat16>("bf16");
  expect_tiny_updates_move_the_rows_on_average<c10::Half>("fp16");
}

TEST(StochasticRounding, DeterministicUnderTheSeed) {
  EXPECT_EQ(updated_rows<c10::BFloat16>(64, 200, 1e-4f, true, 42), updated_rows<c10::BFloat16>(64, 200, 1e-4f, true, 42));
  EXPECT_NE(updated_rows<c10::BFloat16>(64, 200, 1e-4f, true, 42), updated_rows<c10::BFloat16>(64, 200, 1e-4f, true, 43));
  // The bits depend on each of seed, step, row and column.
  const uint16_t base = stochastic_rounding_bits(1, 2, 3, 4);
  EXPECT_NE(base, stochastic_rounding_bits(9, 2, 3, 4));
  EXPECT_NE(base, stochastic_rounding_bits(1, 9, 3, 4));
  EXPECT_NE(base, stochastic_rounding_bits(1, 2, 9, 4));
  EXPECT_NE(base, stochastic_rounding_bits(1, 2, 3, 9));
  EXPECT_NE(base, stochastic_rounding_bits(1, 2, 3, 5));  // another lane of the same 64-bit group
}

// store_row_stochastic (what the row kernels call: one hash per 4 columns,
// from any first column) gives each element stochastic_rounding_bits' bits
// for its global column, whatever the row's first column and length.
TEST(StochasticRounding, ARowStoresWithEachGlobalColumnsBits) {
  std::vector<float> v(37);
  for (size_t j = 0; j < v.size(); ++j) v[j] = 1.0f + 0.37f * static_cast<float>(j) / 64.0f;
  const uint64_t seed = 5, step = 3, row = 11;
  for (uint64_t first : {0, 1, 2, 3, 4, 10}) {
    std::vector<c10::BFloat16> w(v.size());
    store_row_stochastic<c10::BFloat16>(v.data(), w.data(), static_cast<int64_t>(v.size()),
                                        stochastic_rounding_row(stochastic_rounding_stream(seed, step), row), first);
    for (size_t j = 0; j < v.size(); ++j)
      EXPECT_EQ(static_cast<float>(w[j]),
                static_cast<float>(round_stochastic<c10::BFloat16>(v[j], stochastic_rounding_bits(seed, step, row, first + j))))
          << "first column " << first << ", element " << j;
  }
}

}  // namespace stochastic_rounding_test
}  // namespace recmod::optim
