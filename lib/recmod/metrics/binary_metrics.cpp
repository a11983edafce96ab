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

void BinaryMetrics::update(const torch::Tensor& predictions, const torch::Tensor& labels) {
  if (predictions.numel() != labels.numel())
    throw_input_error("BinaryMetrics: expected as many labels as predictions, got ", labels.sizes(), " and ",
                      predictions.sizes());
  auto p = predictions.detach().to(torch::kCPU, torch::kFloat).contiguous().view(-1);
  auto y = labels.detach().to(torch::kCPU, torch::kFloat).contiguous().view(-1);
  update(std::vector<float>(p.data_ptr<float>(), p.data_ptr<float>() + p.numel()),
         std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel()));
}

void BinaryMetrics::update(const std::vector<float>& predictions, const std::vector<float>& labels) {
  if (predictions.size() != labels.size())
    throw_input_error("BinaryMetrics: expected as many labels as predictions, got ", labels.size(), " and ",
                      predictions.size());
  // Refused before anything is accumulated: NaN would poison every sum and
  // break AUC's sort. Rows count from the first update since reset().
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < predictions.size(); ++i)
    if (!std::isfinite(predictions[i]) && bad++ == 0) first_bad = i;
  if (bad > 0)
    throw_input_error("BinaryMetrics: ", bad, " of ", predictions.size(), " predictions are not finite (the first is row ",
                      predictions_.size() + first_bad, ": ", predictions[first_bad], "); expected finite numbers");
  for (size_t i = 0; i < predictions.size(); ++i) {
    const double p = predictions[i], y = labels[i];
    const double pc = clamp_probability(p);
    cross_entropy_ -= y * std::log(pc) + (1.0 - y) * std::log(1.0 - pc);
    positives_ += y;
    prediction_sum_ += p;
    correct_ += ((p >= 0.5) == (y > 0.5)) ? 1 : 0;
  }
  predictions_.insert(predictions_.end(), predictions.begin(), predictions.end());
  labels_.insert(labels_.end(), labels.begin(), labels.end());
}

MetricValues BinaryMetrics::compute() const {
  MetricValues m;
  const auto n = static_cast<double>(predictions_.size());
  m.count = static_cast<int64_t>(predictions_.size());
  if (m.count == 0) return m;
  const double q = clamp_probability(positives_ / n);
  const double baseline = -(positives_ * std::log(q) + (n - positives_) * std::log(1.0 - q));
  m.ne = cross_entropy_ / baseline;
  m.log_loss = cross_entropy_ / n;
  m.accuracy = static_cast<double>(correct_) / n;
  m.calibration = positives_ > 0 ? prediction_sum_ / positives_ : std::numeric_limits<double>::infinity();
  m.auc = auc(predictions_, labels_);
  return m;
}

void BinaryMetrics::reset() { *this = BinaryMetrics(); }

nlohmann::json metrics_of_logits(const torch::Tensor& logits, const torch::Tensor& labels) {
  BinaryMetrics m;
  m.update(torch::sigmoid(logits.to(torch::kFloat)), labels);
  const MetricValues v = m.compute();
  return {{"auc", v.auc}, {"ne", v.ne}, {"log_loss", v.log_loss}, {"accuracy", v.accuracy},
          {"calibration", v.calibration}, {"count", v.count}};
}

}  // namespace recmod::metrics
