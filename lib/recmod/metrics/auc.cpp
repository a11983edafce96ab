#include "recmod/metrics/auc.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

#include "recmod/common/errors.h"

namespace recmod::metrics {

double auc(const std::vector<float>& predictions, const std::vector<float>& labels) {
  if (predictions.size() != labels.size())
    throw_input_error("auc: expected as many labels as predictions, got ", labels.size(), " and ",
                      predictions.size());
  const size_t n = predictions.size();
  // NaN breaks both the sort (not a strict weak order: undefined behaviour)
  // and the tie loop below (NaN == NaN is false, so it would never advance).
  size_t bad = 0, first_bad = n;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(predictions[i]) && bad++ == 0) first_bad = i;
  if (bad > 0)
    throw_input_error("auc: ", bad, " of ", n, " predictions are not finite (the first is row ", first_bad, ": ",
                      predictions[first_bad], "); expected finite numbers");
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return predictions[a] < predictions[b]; });
  double positive_rank_sum = 0.0;
  int64_t positives = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;  // [i, j) is a run of tied predictions with ranks i+1..j
    do ++j;  // always advances, even if equality were ever false
    while (j < n && predictions[order[j]] == predictions[order[i]]);
    const double average_rank = 0.5 * static_cast<double>(i + 1 + j);
    for (size_t k = i; k < j; ++k)
      if (labels[order[k]] > 0.5f) {
        positive_rank_sum += average_rank;
        ++positives;
      }
    i = j;
  }
  const auto p = static_cast<double>(positives), neg = static_cast<double>(n) - p;
  if (p == 0 || neg == 0) return 0.5;
  return (positive_rank_sum - p * (p + 1) / 2) / (p * neg);
}

double weighted_auc(const std::vector<float>& predictions, const std::vector<float>& labels,
                    const std::vector<float>& weights) {
  if (predictions.size() != labels.size() || weights.size() != labels.size())
    throw_input_error("weighted_auc: expected as many labels and weights as predictions, got ", labels.size(), ", ",
                      weights.size(), " and ", predictions.size());
  const size_t n = predictions.size();
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(predictions[i]))
      throw_input_error("weighted_auc: prediction of row ", i, " is not finite (", predictions[i], "); expected finite numbers");
    if (!(weights[i] >= 0) || !std::isfinite(weights[i]))
      throw_input_error("weighted_auc: weight of row ", i, " is ", weights[i], "; expected a finite number >= 0");
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return predictions[a] < predictions[b]; });
  double pairs = 0.0, negatives_below = 0.0, positives = 0.0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    do ++j;
    while (j < n && predictions[order[j]] == predictions[order[i]]);
    double pos = 0.0, neg = 0.0;  // this run of tied predictions
    for (size_t k = i; k < j; ++k) (labels[order[k]] > 0.5f ? pos : neg) += weights[order[k]];
    pairs += pos * (negatives_below + 0.5 * neg);
    negatives_below += neg;
    positives += pos;
    i = j;
  }
  if (positives == 0 || negatives_below == 0) return 0.5;
  return pairs / (positives * negatives_below);
}

}  // namespace recmod::metrics
