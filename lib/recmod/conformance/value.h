#pragma once
// Values of golden case files (../shared/golden/FORMAT.md): tensors, the
// TorchRec sparse types, and Dict/List/Tuple/None around them.
#include <torch/types.h>

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/sparse/jagged_tensor.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod::conformance {

struct Value;
using ValueDict = std::vector<std::pair<std::string, Value>>;  // ordered
using ValueList = std::vector<Value>;

struct Value {
  enum class Kind { None, Tensor, JaggedTensor, KeyedJaggedTensor, KeyedTensor, Dict, List, Tuple };
  Kind kind = Kind::None;
  torch::Tensor tensor;
  JaggedTensor jt;
  KeyedJaggedTensor kjt;
  KeyedTensor kt;
  ValueDict dict;
  ValueList items;

  static Value none() { return {}; }
  static Value of(torch::Tensor t);
  static Value of(JaggedTensor jt);
  static Value of(KeyedJaggedTensor kjt);
  static Value of(KeyedTensor kt);
  static Value of_dict(ValueDict items);
  static Value of_list(ValueList items);
  static Value of_tuple(ValueList items);
  /// Dict[str, JaggedTensor] (EmbeddingCollection, MCH modules).
  static Value of(const std::vector<std::pair<std::string, JaggedTensor>>& jts);

  bool is_none() const { return kind == Kind::None; }
  /// Accessors that throw InputError naming `what` when the kind differs.
  const torch::Tensor& as_tensor(const std::string& what) const;
  const JaggedTensor& as_jt(const std::string& what) const;
  const KeyedJaggedTensor& as_kjt(const std::string& what) const;
  const KeyedTensor& as_kt(const std::string& what) const;
  const ValueDict& as_dict(const std::string& what) const;
  const ValueList& as_list(const std::string& what) const;  // List or Tuple
  /// Dict of JaggedTensor -> ordered (key, JaggedTensor) pairs.
  std::vector<std::pair<std::string, JaggedTensor>> as_jt_dict(const std::string& what) const;
};

const char* kind_name(Value::Kind kind);

/// The same value with every tensor (sparse types included) on `device`.
Value value_to(const Value& v, const torch::Device& device);

/// Parse a TENSOR object ({"dtype","shape","data"}); throws InputError with `where`.
torch::Tensor tensor_from_json(const nlohmann::ordered_json& j, const std::string& where);
/// Parse any VALUE; throws InputError naming `where` (a JSON path).
Value value_from_json(const nlohmann::ordered_json& j, const std::string& where);

/// First difference between expected and actual, or nullopt when they agree.
struct Mismatch {
  std::string where;   // path, e.g. "calls[1].outputs.values"
  std::string detail;  // e.g. "index 3: expected 0.5, got 0.7"
};
std::optional<Mismatch> compare_tensors(const torch::Tensor& expected, const torch::Tensor& actual, double rtol,
                                        double atol, const std::string& where);
std::optional<Mismatch> compare_values(const Value& expected, const Value& actual, double rtol, double atol,
                                       const std::string& where);

/// Sum of every element of every floating-point tensor in `v` (the golden
/// train_step loss); an undefined tensor when there is none.
torch::Tensor sum_of_float_outputs(const Value& v);

}  // namespace recmod::conformance
