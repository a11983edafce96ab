#pragma once
// Streaming metrics of a binary classifier, accumulated over batches.
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace recmod::metrics {

struct MetricValues {
  double auc = 0.5;
  double ne = 0.0;           // normalized entropy (TorchRec's NE)
  double log_loss = 0.0;     // mean binary cross-entropy, natural log
  double accuracy = 0.0;     // fraction with (prediction >= 0.5) == label
  double calibration = 0.0;  // sum(predictions) / sum(labels); inf without positives
  int64_t count = 0;         // examples seen
  /// "auc 0.7512 ne 0.9123 logloss 0.4512 acc 0.7800 calib 1.0123 n 1000"
  std::string to_string() const;
};

/// Accumulates predictions (probabilities in [0, 1], i.e. after the sigmoid)
/// and 0/1 labels over batches, with optional sample weights w (1 when not
/// given; TorchRec's RecMetrics with `weights`). With eta = 1e-12 clamping as TorchRec:
///   ce   = -sum w (y log p + (1 - y) log(1 - p))      (p clamped to [eta, 1 - eta])
///   ne   = ce / -(P log q + N log(1 - q)),  P = sum w y, n = sum w, N = n - P,
///          q = P / n clamped likewise
///   log_loss = ce / n,  accuracy = sum w [(p >= 0.5) == (y > 0.5)] / n,
///   calibration = sum w p / P,  auc: weighted_auc (auc when unweighted).
/// count is the number of examples (not their weight). AUC is exact (all
/// predictions are kept). update() throws InputError on a NaN or inf
/// prediction (how many, the first row) or a negative weight, accumulating nothing.
class BinaryMetrics {
 public:
  /// predictions and labels of any shape with the same numel, any device;
  /// weights undefined or with that numel.
  void update(const torch::Tensor& predictions, const torch::Tensor& labels,
              const torch::Tensor& weights = torch::Tensor());
  void update(const std::vector<float>& predictions, const std::vector<float>& labels,
              const std::vector<float>& weights = {});
  MetricValues compute() const;
  void reset();

 private:
  std::vector<float> predictions_, labels_, weights_;  // weights_: 1 for unweighted rows
  bool weighted_ = false;       // some update had weights
  double cross_entropy_ = 0.0;  // natural log, weighted
  double positives_ = 0.0;      // sum w y
  double weight_sum_ = 0.0;     // sum w
  double prediction_sum_ = 0.0; // sum w p
  double correct_ = 0.0;        // sum w [correct]
};

/// AUC, NE, log loss, accuracy, calibration and count of logits (N) against
/// 0/1 labels (N), weighted by `weights` (N) when defined, as one JSON
/// object: what eval prints and metrics.jsonl holds.
nlohmann::json metrics_of_logits(const torch::Tensor& logits, const torch::Tensor& labels,
                                 const torch::Tensor& weights = torch::Tensor());

/// A regression task's metrics of predictions (N) against targets (N),
/// weighted when `weights` is defined: mse = sum w (p - y)^2 / sum w, rmse =
/// sqrt(mse), count (examples), as one JSON object.
nlohmann::json regression_metrics(const torch::Tensor& predictions, const torch::Tensor& targets,
                                  const torch::Tensor& weights = torch::Tensor());

}  // namespace recmod::metrics
