#include "recmod/data/generate.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string_view>

#include "recmod/common/errors.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/jsonl.h"

namespace recmod::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

// splitmix64: a tiny generator whose output is fully specified, so the data
// of a seed is the same on every platform and standard library.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double uniform(uint64_t& state) { return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53; }
double normal(uint64_t& state) {  // Box-Muller
  const double u1 = 1.0 - uniform(state), u2 = uniform(state);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}
/// A value in [lo, hi] uniformly.
int64_t uniform_int(uint64_t& state, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(hi - lo + 1));
}
/// Rank in [1, n] with P(k) ~ k^-s (inverse CDF of the continuous law on [1, n + 1)).
int64_t zipf_rank(uint64_t& state, int64_t n, double s) {
  const double u = uniform(state);
  double x;
  if (std::abs(s - 1.0) < 1e-9) {
    x = std::exp(u * std::log(static_cast<double>(n) + 1.0));
  } else {
    const double a = 1.0 - s;
    x = std::pow(u * (std::pow(static_cast<double>(n) + 1.0, a) - 1.0) + 1.0, 1.0 / a);
  }
  return std::clamp<int64_t>(static_cast<int64_t>(x), 1, n);
}
/// A seeded hash of (seed, salt, a, b) -> N(0, 1).
double hashed_normal(uint64_t seed, uint64_t salt, uint64_t a, uint64_t b) {
  uint64_t state = seed ^ (salt * 0xD6E8FEB86659FD93ull);
  state ^= splitmix64(state) + a;
  state ^= splitmix64(state) + b;
  return normal(state);
}

void validate(const GenerateOptions& o) {
  if (o.num_rows < 0) throw_input_error("generate: num_rows must be >= 0, got ", o.num_rows);
  if (o.num_dense < 0) throw_input_error("generate: num_dense must be >= 0, got ", o.num_dense);
  if (!(o.base_rate > 0.0 && o.base_rate < 1.0))
    throw_input_error("generate: base_rate must be in (0, 1), got ", o.base_rate);
  if (!(o.zipf_exponent > 0.0)) throw_input_error("generate: zipf_exponent must be > 0, got ", o.zipf_exponent);
  for (const auto& f : o.sparse) {
    if (f.cardinality <= 0)
      throw_input_error("generate: feature ", f.name, ": cardinality must be > 0, got ", f.cardinality);
    if (f.min_ids < 0 || f.max_ids < f.min_ids)
      throw_input_error("generate: feature ", f.name, ": expected 0 <= min_ids <= max_ids, got ", f.min_ids, " and ",
                        f.max_ids);
  }
}

}  // namespace

std::vector<SyntheticFeature> numbered_features(int64_t count, int64_t cardinality, int64_t max_ids) {
  std::vector<SyntheticFeature> features;
  for (int64_t i = 1; i <= count; ++i) features.push_back({"C" + std::to_string(i), cardinality, 1, max_ids});
  return features;
}

SyntheticFeature parse_synthetic_feature(const std::string& spec) {
  auto fail = [&](const std::string& why) -> SyntheticFeature {
    throw UsageError(str_cat("sparse feature '", spec,
                             "': expected name:cardinality[:ids or min-max], e.g. user:100000 or tags:5000:1-4 (",
                             why, ")"));
  };
  auto to_int = [&](std::string_view text, const char* what) {
    int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
      fail(str_cat(what, " '", text, "' is not an integer"));
    return value;
  };
  const std::string_view s(spec);
  const auto c1 = s.find(':');
  if (c1 == std::string_view::npos || c1 == 0) return fail("no name:cardinality");
  SyntheticFeature f;
  f.name = std::string(s.substr(0, c1));
  const auto c2 = s.find(':', c1 + 1);
  f.cardinality = to_int(s.substr(c1 + 1, c2 == std::string_view::npos ? std::string_view::npos : c2 - c1 - 1),
                         "cardinality");
  if (c2 != std::string_view::npos) {
    const std::string_view ids = s.substr(c2 + 1);
    const auto dash = ids.find('-');
    if (dash == std::string_view::npos) {
      f.min_ids = f.max_ids = to_int(ids, "ids");
    } else {
      f.min_ids = to_int(ids.substr(0, dash), "min ids");
      f.max_ids = to_int(ids.substr(dash + 1), "max ids");
    }
  }
  if (f.cardinality <= 0) return fail("cardinality must be > 0");
  if (f.min_ids < 0 || f.max_ids < f.min_ids) return fail("ids per bag must satisfy 0 <= min <= max");
  return f;
}

DataSchema synthetic_schema(const GenerateOptions& options) {
  DataSchema s;
  s.num_dense = options.num_dense;
  for (const auto& f : options.sparse) s.sparse_features.push_back(f.name);
  s.weighted = options.weighted;
  return s;
}

double planted_weight(const GenerateOptions& options, size_t feature, int64_t id) {
  return options.signal_strength * hashed_normal(options.seed, 1, feature, static_cast<uint64_t>(id));
}

double planted_dense_coefficient(const GenerateOptions& options, int64_t d) {
  return options.dense_strength * hashed_normal(options.seed, 2, static_cast<uint64_t>(d), 0);
}

SyntheticReader::SyntheticReader(GenerateOptions options)
    : options_(std::move(options)), schema_(synthetic_schema(options_)), state_(options_.seed ^ 0x5EEDull) {
  validate(options_);
  for (int64_t d = 0; d < options_.num_dense; ++d) dense_coefficients_.push_back(planted_dense_coefficient(options_, d));
}

std::optional<ExampleColumns> SyntheticReader::read(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "SyntheticReader::read: expected max_rows > 0, got ", max_rows);
  if (row_ >= options_.num_rows) return std::nullopt;
  const int64_t n = std::min(max_rows, options_.num_rows - row_);
  const size_t num_signal = options_.num_signal_features < 0
                                ? options_.sparse.size()
                                : std::min<size_t>(options_.num_signal_features, options_.sparse.size());
  const double bias = std::log(options_.base_rate / (1.0 - options_.base_rate));
  ExampleColumns out(schema_);
  out.reserve(n);
  for (int64_t r = 0; r < n; ++r) {
    double logit = bias;
    for (int64_t d = 0; d < options_.num_dense; ++d) {
      const double x = normal(state_);
      out.dense.push_back(static_cast<float>(x));
      logit += dense_coefficients_[d] * x;
    }
    for (size_t f = 0; f < options_.sparse.size(); ++f) {
      const auto& spec = options_.sparse[f];
      const int64_t count = uniform_int(state_, spec.min_ids, spec.max_ids);
      double sum = 0.0;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t id = zipf_rank(state_, spec.cardinality, options_.zipf_exponent) - 1;
        out.sparse[f].ids.push_back(id);
        if (options_.weighted) out.sparse[f].weights.push_back(static_cast<float>(0.5 + uniform(state_)));
        if (f < num_signal) sum += planted_weight(options_, f, id);
      }
      if (count > 0) logit += sum / static_cast<double>(count);
      out.close_bag(f);
    }
    const double p = 1.0 / (1.0 + std::exp(-logit));
    out.labels.push_back(uniform(state_) < p ? 1.0f : 0.0f);
    out.finish_row();
  }
  row_ += n;
  report_.rows_read += n;
  return out;
}

void generate_to_file(const GenerateOptions& options, const std::string& path, GenerateFormat format,
                      int64_t skip_rows) {
  if (skip_rows < 0) throw UsageError("generate: the rows to skip must be >= 0, got " + std::to_string(skip_rows));
  GenerateOptions stream = options;
  stream.num_rows = skip_rows + options.num_rows;
  SyntheticReader reader(stream);
  constexpr int64_t kBlock = 65536;
  for (int64_t left = skip_rows; left > 0;) {
    auto block = reader.read(std::min(left, kBlock));
    if (!block) break;
    left -= block->num_rows();
  }
  if (format == GenerateFormat::kBinary) {
    BinaryWriter writer(path, reader.schema());
    while (auto block = reader.read(kBlock)) writer.write(*block);
    writer.close();
  } else {
    JsonlWriter writer(path);
    while (auto block = reader.read(kBlock)) writer.write(*block);
    writer.close();
  }
}

}  // namespace recmod::data
