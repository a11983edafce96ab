#include "recmod/config/value.h"

#include <numeric>

#include "recmod/common/errors.h"

namespace recmod::config {

ValueShape ValueShape::pooled(std::vector<std::string> keys, std::vector<int64_t> dims) {
  int64_t width = std::accumulate(dims.begin(), dims.end(), int64_t{0});
  return {ValueKind::Pooled, width, std::move(keys), std::move(dims)};
}

ValueShape ValueShape::sequence(std::vector<std::string> keys, std::vector<int64_t> dims) {
  return {ValueKind::Sequence, 0, std::move(keys), std::move(dims)};
}

namespace {
std::string keyed_dims(const std::vector<std::string>& keys, const std::vector<int64_t>& dims) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += str_cat(i ? ", " : "", keys[i], ": ", dims[i]);
  return "[" + out + "]";
}
}  // namespace

std::string ValueShape::str() const {
  switch (kind) {
    case ValueKind::Dense: return str_cat("(B, ", width, ")");
    case ValueKind::Pooled: return str_cat("KeyedTensor ", keyed_dims(keys, dims), " (B, ", width, ")");
    case ValueKind::Sequence: return str_cat("JaggedTensors ", keyed_dims(keys, dims));
    case ValueKind::Sparse: return str_cat("KJT ", join_names(keys));
  }
  return "?";
}

std::string ValueShape::kind_name() const {
  switch (kind) {
    case ValueKind::Dense: return "a dense " + str() + " tensor";
    case ValueKind::Pooled: return "pooled embeddings " + str();
    case ValueKind::Sequence: return "sequence embeddings " + str();
    case ValueKind::Sparse: return "sparse features " + str();
  }
  return "?";
}

torch::Tensor Value::as_dense() const {
  if (kind == ValueKind::Dense) return dense;
  if (kind == ValueKind::Pooled) return pooled.values();
  throw InputError("internal: a sequence or sparse value used where a dense tensor was expected");
}

}  // namespace recmod::config
