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

}  // namespace recmod::metrics
