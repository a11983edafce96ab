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
/// and 0/1 labels over batches. With eta = 1e-12 clamping as TorchRec:
///   ce   = -sum(y log p + (1 - y) log(1 - p))        (p clamped to [eta, 1 - eta])
///   ne   = ce / -(P log q + N log(1 - q)),  q = P / n clamped likewise
///   log_loss = ce / n,  calibration = sum p / P.
/// AUC is exact (all predictions are kept). update() throws InputError on a
/// NaN or inf prediction (how many, the first row), accumulating nothing.
class BinaryMetrics {
 public:
  /// predictions and labels of any shape with the same numel, any device.
  void update(const torch::Tensor& predictions, const torch::Tensor& labels);
  void update(const std::vector<float>& predictions, const std::vector<float>& labels);
  MetricValues compute() const;
  void reset();

 private:
  std::vector<float> predictions_, labels_;
  double cross_entropy_ = 0.0;  // natural log
  double positives_ = 0.0;
  double prediction_sum_ = 0.0;
  int64_t correct_ = 0;
};

/// AUC, NE, log loss, accuracy, calibration and count of logits (N) against
/// 0/1 labels (N), as one JSON object: what eval prints and metrics.jsonl holds.
nlohmann::json metrics_of_logits(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace recmod::metrics
