#pragma once
// generate: synthetic examples of a given schema with a planted signal, so a
// model trained on them measurably beats chance (what `recmod generate` runs).
#include <cstdint>
#include <string>
#include <vector>

#include "recmod/data/example_reader.h"

namespace recmod::data {

struct SyntheticFeature {
  std::string name;
  int64_t cardinality = 1000;  // ids are in [0, cardinality); id 0 is the most frequent
  int64_t min_ids = 1;         // ids per bag, uniform in [min_ids, max_ids]
  int64_t max_ids = 1;
};

/// "name:cardinality" or "name:cardinality:ids" or "name:cardinality:min-max"
/// (ids per bag), as a command line gives it; throws UsageError showing the
/// expected form.
SyntheticFeature parse_synthetic_feature(const std::string& spec);

/// `count` features named C1..C<count> (the names `recmod generate --sparse`
/// gives), each over `cardinality` ids with 1 to max_ids ids per bag.
std::vector<SyntheticFeature> numbered_features(int64_t count, int64_t cardinality, int64_t max_ids);

struct GenerateOptions {
  int64_t num_rows = 10000;
  int64_t num_dense = 4;
  std::vector<SyntheticFeature> sparse;
  bool weighted = false;       // ids carry weights uniform in [0.5, 1.5)
  double zipf_exponent = 1.05;  // s in P(rank k) ~ k^-s
  /// The first num_signal_features features (all when -1) carry a hidden
  /// per-id weight ~ N(0, signal_strength^2); the others are noise.
  int64_t num_signal_features = -1;
  double signal_strength = 1.0;
  double dense_strength = 0.5;  // hidden dense coefficients ~ N(0, dense_strength^2)
  double base_rate = 0.25;      // label rate when every term is 0
  uint64_t seed = 0;
};

/// The schema generated data has: dense count, feature names, one label.
DataSchema synthetic_schema(const GenerateOptions& options);

/// The hidden weight of `id` in feature number `feature` (deterministic per seed).
double planted_weight(const GenerateOptions& options, size_t feature, int64_t id);
/// The hidden coefficient of dense feature `d`.
double planted_dense_coefficient(const GenerateOptions& options, int64_t d);

/// Streams generated examples (deterministic for a seed, independent of how
/// the rows are requested). For each example:
///   dense x_d ~ N(0, 1); each bag: n ~ U[min_ids, max_ids] ids, rank k drawn
///   from the continuous Zipf law (inverse CDF), id = k - 1;
///   logit = log(base_rate / (1 - base_rate)) + sum_signal_f mean_{id in bag f} w_f(id)
///           + sum_d c_d x_d;   label ~ Bernoulli(sigmoid(logit)).
class SyntheticReader : public ExampleReader {
 public:
  explicit SyntheticReader(GenerateOptions options);
  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  ReadReport report() const override { return report_; }

 private:
  GenerateOptions options_;
  DataSchema schema_;
  std::vector<double> dense_coefficients_;
  uint64_t state_;  // splitmix64 stream of the examples
  int64_t row_ = 0;
  ReadReport report_;
};

enum class GenerateFormat { kJsonl, kBinary };

/// Writes options.num_rows generated examples to `path`: rows
/// [skip_rows, skip_rows + num_rows) of the stream for options.seed, so with
/// skip_rows = the row count of another file, a held-out set with the same
/// planted signal.
void generate_to_file(const GenerateOptions& options, const std::string& path, GenerateFormat format,
                      int64_t skip_rows = 0);

}  // namespace recmod::data
