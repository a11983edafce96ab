#include "recmod/metrics/binary_metrics.h"

#include <torch/torch.h>

#include <cmath>
#include <iomanip>
#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/metrics/auc.h"

namespace recmod::metrics {

namespace {
constexpr double kEta = 1e-12;  // TorchRec's clamp for NE
double clamp_probability(double p) { return std::clamp(p, kEta, 1.0 - kEta); }
}  // namespace

std::string MetricValues::to_string() const {
  std::ostringstream os;
  os << std::fixed << std::setprecision(4) << "auc " << auc << " ne " << ne << " logloss " << log_loss << " acc "
     << accuracy << " calib " << calibration << " n " << count;
  return os.str();
}

namespace {
std::vector<float> floats_of(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat).contiguous().view(-1);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
}  // namespace

void BinaryMetrics::update(const torch::Tensor& predictions, const torch::Tensor& labels,
                           const torch::Tensor& weights) {
  if (predictions.numel() != labels.numel() || (weights.defined() && weights.numel() != labels.numel()))
    throw_input_error("BinaryMetrics: expected as many labels (and weights) as predictions, got ", labels.sizes(),
                      weights.defined() ? str_cat(", ", weights.sizes()) : std::string(), " and ", predictions.sizes());
  update(floats_of(predictions), floats_of(labels), weights.defined() ? floats_of(weights) : std::vector<float>{});
}

void BinaryMetrics::update(const std::vector<float>& predictions, const std::vector<float>& labels,
                           const std::vector<float>& weights) {
  if (predictions.size() != labels.size() || (!weights.empty() && weights.size() != labels.size()))
    throw_input_error("BinaryMetrics: expected as many labels (and weights) as predictions, got ", labels.size(),
                      weights.empty() ? std::string() : str_cat(", ", weights.size()), " and ", predictions.size());
  // Refused before anything is accumulated: NaN would poison every sum and
  // break AUC's sort. Rows count from the first update since reset().
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < predictions.size(); ++i)
    if (!std::isfinite(predictions[i]) && bad++ == 0) first_bad = i;
  if (bad > 0)
    throw_input_error("BinaryMetrics: ", bad, " of ", predictions.size(), " predictions are not finite (the first is row ",
                      predictions_.size() + first_bad, ": ", predictions[first_bad], "); expected finite numbers");
  for (size_t i = 0; i < weights.size(); ++i)
    if (!(weights[i] >= 0) || !std::isfinite(weights[i]))
      throw_input_error("BinaryMetrics: the weight of row ", predictions_.size() + i, " is ", weights[i],
                        "; expected a finite number >= 0");
  for (size_t i = 0; i < predictions.size(); ++i) {
    const double p = predictions[i], y = labels[i], w = weights.empty() ? 1.0 : weights[i];
    const double pc = clamp_probability(p);
    cross_entropy_ -= w * (y * std::log(pc) + (1.0 - y) * std::log(1.0 - pc));
    positives_ += w * y;
    weight_sum_ += w;
    prediction_sum_ += w * p;
    correct_ += ((p >= 0.5) == (y > 0.5)) ? w : 0.0;
  }
  predictions_.insert(predictions_.end(), predictions.begin(), predictions.end());
  labels_.insert(labels_.end(), labels.begin(), labels.end());
  if (weights.empty()) {
    weights_.resize(predictions_.size(), 1.0f);
  } else {
    weights_.insert(weights_.end(), weights.begin(), weights.end());
    weighted_ = true;
  }
}

MetricValues BinaryMetrics::compute() const {
  MetricValues m;
  const double n = weight_sum_;
  m.count = static_cast<int64_t>(predictions_.size());
  if (m.count == 0 || n <= 0) return m;
  const double q = clamp_probability(positives_ / n);
  const double baseline = -(positives_ * std::log(q) + (n - positives_) * std::log(1.0 - q));
  m.ne = cross_entropy_ / baseline;
  m.log_loss = cross_entropy_ / n;
  m.accuracy = correct_ / n;
  m.calibration = positives_ > 0 ? prediction_sum_ / positives_ : std::numeric_limits<double>::infinity();
  m.auc = weighted_ ? weighted_auc(predictions_, labels_, weights_) : auc(predictions_, labels_);
  return m;
}

void BinaryMetrics::reset() { *this = BinaryMetrics(); }

nlohmann::json metrics_of_logits(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights) {
  BinaryMetrics m;
  m.update(torch::sigmoid(logits.to(torch::kFloat)), labels, weights);
  const MetricValues v = m.compute();
  return {{"auc", v.auc}, {"ne", v.ne}, {"log_loss", v.log_loss}, {"accuracy", v.accuracy},
          {"calibration", v.calibration}, {"count", v.count}};
}

nlohmann::json regression_metrics(const torch::Tensor& predictions, const torch::Tensor& targets,
                                  const torch::Tensor& weights) {
  const std::vector<float> p = floats_of(predictions), y = floats_of(targets);
  const std::vector<float> w = weights.defined() ? floats_of(weights) : std::vector<float>(p.size(), 1.0f);
  if (y.size() != p.size() || w.size() != p.size())
    throw_input_error("regression_metrics: expected as many targets and weights as predictions, got ", y.size(), ", ",
                      w.size(), " and ", p.size());
  double sum = 0.0, weight = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!std::isfinite(p[i]))
      throw_input_error("regression_metrics: prediction of row ", i, " is not finite (", p[i], "); expected finite numbers");
    sum += static_cast<double>(w[i]) * (p[i] - y[i]) * (p[i] - y[i]);
    weight += w[i];
  }
  const double mse = weight > 0 ? sum / weight : 0.0;
  return {{"mse", mse}, {"rmse", std::sqrt(mse)}, {"count", static_cast<int64_t>(p.size())}};
}

}  // namespace recmod::metrics
