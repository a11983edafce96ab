#pragma once
// Exact ROC AUC over all examples.
#include <vector>

namespace recmod::metrics {

/// AUC = P(score of a random positive > score of a random negative), ties
/// counting 1/2 (the Mann-Whitney statistic with average ranks):
///   AUC = (sum of positives' ranks - P (P + 1) / 2) / (P N),
/// ranks 1..n by ascending prediction, tied predictions sharing their average
/// rank. Labels > 0.5 are positives. Returns 0.5 when there are no positives
/// or no negatives (AUC is undefined there). O(n log n). A NaN or inf
/// prediction throws InputError naming how many and the first row (0-based).
double auc(const std::vector<float>& predictions, const std::vector<float>& labels);

/// Weighted AUC: the probability above with each (positive, negative) pair
/// counted with weight w_pos * w_neg (TorchRec's AUC with `weights`), ties 1/2:
///   AUC = sum_{i pos, j neg} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W_pos W_neg).
/// Equals auc() when every weight is 1; 0.5 when W_pos or W_neg is 0.
/// Weights must be finite and >= 0 (InputError naming the first bad row).
double weighted_auc(const std::vector<float>& predictions, const std::vector<float>& labels,
                    const std::vector<float>& weights);

}  // namespace recmod::metrics
