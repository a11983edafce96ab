#include "recmod/conformance/value.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "recmod/common/errors.h"

namespace recmod::conformance {

using json = nlohmann::ordered_json;

Value Value::of(torch::Tensor t) {
  Value v;
  v.kind = Kind::Tensor;
  v.tensor = std::move(t);
  return v;
}
Value Value::of(JaggedTensor jt) {
  Value v;
  v.kind = Kind::JaggedTensor;
  v.jt = std::move(jt);
  return v;
}
Value Value::of(KeyedJaggedTensor kjt) {
  Value v;
  v.kind = Kind::KeyedJaggedTensor;
  v.kjt = std::move(kjt);
  return v;
}
Value Value::of(KeyedTensor kt) {
  Value v;
  v.kind = Kind::KeyedTensor;
  v.kt = std::move(kt);
  return v;
}
Value Value::of_dict(ValueDict items) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::move(items);
  return v;
}
Value Value::of_list(ValueList items) {
  Value v;
  v.kind = Kind::List;
  v.items = std::move(items);
  return v;
}
Value Value::of_tuple(ValueList items) {
  Value v;
  v.kind = Kind::Tuple;
  v.items = std::move(items);
  return v;
}
Value Value::of(const std::vector<std::pair<std::string, JaggedTensor>>& jts) {
  ValueDict d;
  for (const auto& [k, jt] : jts) d.emplace_back(k, Value::of(jt));
  return of_dict(std::move(d));
}

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::None: return "None";
    case Value::Kind::Tensor: return "Tensor";
    case Value::Kind::JaggedTensor: return "JaggedTensor";
    case Value::Kind::KeyedJaggedTensor: return "KeyedJaggedTensor";
    case Value::Kind::KeyedTensor: return "KeyedTensor";
    case Value::Kind::Dict: return "Dict";
    case Value::Kind::List: return "List";
    case Value::Kind::Tuple: return "Tuple";
  }
  return "?";
}

Value value_to(const Value& v, const torch::Device& device) {
  using K = Value::Kind;
  Value out = v;
  switch (v.kind) {
    case K::None: break;
    case K::Tensor: out.tensor = v.tensor.defined() ? v.tensor.to(device) : v.tensor; break;
    case K::JaggedTensor: out.jt = v.jt.to(device); break;
    case K::KeyedJaggedTensor: out.kjt = v.kjt.to(device); break;
    case K::KeyedTensor: out.kt = v.kt.to(device); break;
    case K::Dict:
      for (auto& kv : out.dict) kv.second = value_to(kv.second, device);
      break;
    case K::List:
    case K::Tuple:
      for (auto& item : out.items) item = value_to(item, device);
      break;
  }
  return out;
}

namespace {
void expect_kind(const Value& v, Value::Kind k, const std::string& what) {
  if (v.kind != k) throw_input_error(what, ": expected ", kind_name(k), ", got ", kind_name(v.kind));
}
}  // namespace

const torch::Tensor& Value::as_tensor(const std::string& what) const {
  expect_kind(*this, Kind::Tensor, what);
  return tensor;
}
const JaggedTensor& Value::as_jt(const std::string& what) const {
  expect_kind(*this, Kind::JaggedTensor, what);
  return jt;
}
const KeyedJaggedTensor& Value::as_kjt(const std::string& what) const {
  expect_kind(*this, Kind::KeyedJaggedTensor, what);
  return kjt;
}
const KeyedTensor& Value::as_kt(const std::string& what) const {
  expect_kind(*this, Kind::KeyedTensor, what);
  return kt;
}
const ValueDict& Value::as_dict(const std::string& what) const {
  expect_kind(*this, Kind::Dict, what);
  return dict;
}
const ValueList& Value::as_list(const std::string& what) const {
  if (kind != Kind::List && kind != Kind::Tuple)
    throw_input_error(what, ": expected List or Tuple, got ", kind_name(kind));
  return items;
}
std::vector<std::pair<std::string, JaggedTensor>> Value::as_jt_dict(const std::string& what) const {
  std::vector<std::pair<std::string, JaggedTensor>> out;
  for (const auto& [k, v] : as_dict(what)) out.emplace_back(k, v.as_jt(what + "." + k));
  return out;
}

// ---------------------------------------------------------------- parsing

namespace {
torch::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  if (name == "float32") return torch::kFloat;
  if (name == "float64") return torch::kDouble;
  if (name == "float16") return torch::kHalf;
  if (name == "int64") return torch::kLong;
  if (name == "int32") return torch::kInt;
  if (name == "bool") return torch::kBool;
  throw_input_error(where, ": unknown dtype '", name, "' (expected float32, float64, float16, int64, int32, bool)");
}

const json& field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) throw_input_error(where, ": missing field '", key, "'");
  return *it;
}

double number_of(const json& d, const std::string& where) {
  if (d.is_number()) return d.get<double>();
  if (d.is_string()) {  // NaN/Infinity spelled as strings
    const auto s = d.get<std::string>();
    if (s == "nan" || s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf" || s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-inf" || s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  throw_input_error(where, ": expected a number, got ", d.dump());
}
}  // namespace

torch::Tensor tensor_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw_input_error(where, ": expected a tensor object, got ", j.type_name());
  const auto dtype = dtype_from_name(field(j, "dtype", where).get<std::string>(), where + ".dtype");
  std::vector<int64_t> shape = field(j, "shape", where).get<std::vector<int64_t>>();
  const json& data = field(j, "data", where);
  if (!data.is_array()) throw_input_error(where, ".data: expected an array, got ", data.type_name());
  int64_t numel = 1;
  for (auto s : shape) {
    if (s < 0) throw_input_error(where, ".shape: negative size ", s);
    numel *= s;
  }
  if (static_cast<int64_t>(data.size()) != numel)
    throw_input_error(where, ".data: shape ", c10::IntArrayRef(shape), " needs ", numel, " values, got ",
                      data.size());
  torch::Tensor out = torch::empty(shape, torch::dtype(dtype));
  auto flat = out.view({-1});
  for (int64_t i = 0; i < numel; ++i) {
    const json& d = data[i];
    const std::string w = where + ".data[" + std::to_string(i) + "]";
    switch (dtype) {
      case torch::kLong:
        if (d.is_number_unsigned()) {
          flat.data_ptr<int64_t>()[i] = static_cast<int64_t>(d.get<uint64_t>());
        } else if (d.is_number_integer()) {
          flat.data_ptr<int64_t>()[i] = d.get<int64_t>();
        } else {
          throw_input_error(w, ": expected an integer, got ", d.dump());
        }
        break;
      case torch::kInt:
        if (!d.is_number_integer()) throw_input_error(w, ": expected an integer, got ", d.dump());
        flat.data_ptr<int32_t>()[i] = d.get<int32_t>();
        break;
      case torch::kBool:
        if (!d.is_boolean()) throw_input_error(w, ": expected true/false, got ", d.dump());
        flat.data_ptr<bool>()[i] = d.get<bool>();
        break;
      case torch::kDouble: flat.data_ptr<double>()[i] = number_of(d, w); break;
      case torch::kHalf: flat[i] = number_of(d, w); break;
      default: flat.data_ptr<float>()[i] = static_cast<float>(number_of(d, w)); break;
    }
  }
  return out;
}

namespace {
std::optional<torch::Tensor> optional_tensor(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return tensor_from_json(*it, where + "." + key);
}

template <typename F>
auto rethrow_with_where(const std::string& where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const InputError& e) {
    throw InputError(where + ": " + e.what());
  }
}
}  // namespace

Value value_from_json(const json& j, const std::string& where) {
  if (j.is_null()) return Value::none();
  if (!j.is_object()) throw_input_error(where, ": expected an object or null, got ", j.type_name());
  if (j.contains("dtype")) return Value::of(tensor_from_json(j, where));
  const auto type = field(j, "type", where).get<std::string>();
  if (type == "JaggedTensor") {
    auto values = tensor_from_json(field(j, "values", where), where + ".values");
    auto lengths = tensor_from_json(field(j, "lengths", where), where + ".lengths");
    auto weights = optional_tensor(j, "weights", where);
    return Value::of(rethrow_with_where(where, [&] { return JaggedTensor::from_lengths(values, lengths, weights); }));
  }
  if (type == "KeyedJaggedTensor") {
    auto keys = field(j, "keys", where).get<std::vector<std::string>>();
    auto values = tensor_from_json(field(j, "values", where), where + ".values");
    auto lengths = tensor_from_json(field(j, "lengths", where), where + ".lengths");
    auto weights = optional_tensor(j, "weights", where);
    // Variable batch per feature (FORMAT.md's VBE section).
    auto strides = j.find("stride_per_key_per_rank");
    std::optional<InverseIndices> inverse;
    if (auto it = j.find("inverse_indices"); it != j.end() && !it->is_null())
      inverse = InverseIndices{field(*it, "keys", where + ".inverse_indices").get<std::vector<std::string>>(),
                               tensor_from_json(field(*it, "indices", where + ".inverse_indices"),
                                                where + ".inverse_indices.indices")};
    return Value::of(rethrow_with_where(where, [&] {
      auto kjt = strides != j.end() && !strides->is_null()
                     ? KeyedJaggedTensor::from_lengths_variable_stride(
                           keys, values, lengths, weights, strides->get<std::vector<std::vector<int64_t>>>())
                     : KeyedJaggedTensor::from_lengths(keys, values, lengths, weights);
      return inverse ? kjt.with_inverse_indices(*inverse) : kjt;
    }));
  }
  if (type == "KeyedTensor") {
    auto keys = field(j, "keys", where).get<std::vector<std::string>>();
    auto lpk = field(j, "length_per_key", where).get<std::vector<int64_t>>();
    auto key_dim = j.value("key_dim", 1);
    auto values = tensor_from_json(field(j, "values", where), where + ".values");
    return Value::of(rethrow_with_where(where, [&] { return KeyedTensor(keys, lpk, values, key_dim); }));
  }
  if (type == "Dict") {
    ValueDict d;
    for (const auto& [k, v] : field(j, "items", where).items()) d.emplace_back(k, value_from_json(v, where + "." + k));
    return Value::of_dict(std::move(d));
  }
  if (type == "List" || type == "Tuple") {
    ValueList items;
    const auto& arr = field(j, "items", where);
    for (size_t i = 0; i < arr.size(); ++i)
      items.push_back(value_from_json(arr[i], where + "[" + std::to_string(i) + "]"));
    return type == "List" ? Value::of_list(std::move(items)) : Value::of_tuple(std::move(items));
  }
  throw_input_error(where, ": unknown value type '", type,
                    "' (expected JaggedTensor, KeyedJaggedTensor, KeyedTensor, Dict, List, Tuple or a tensor)");
}

// ---------------------------------------------------------------- comparing

namespace {
std::string scalar_str(const torch::Tensor& flat, int64_t i) {
  auto v = flat[i];
  if (flat.scalar_type() == torch::kBool) return v.item<bool>() ? "true" : "false";
  if (flat.is_floating_point()) return str_cat(v.item<double>());
  return str_cat(v.item<int64_t>());
}

std::optional<Mismatch> mismatch(const std::string& where, std::string detail) {
  return Mismatch{where, std::move(detail)};
}

std::optional<Mismatch> compare_names(const std::vector<std::string>& e, const std::vector<std::string>& a,
                                      const std::string& where) {
  if (e != a) return mismatch(where, str_cat("expected ", join_names(e), ", got ", join_names(a)));
  return std::nullopt;
}

std::optional<Mismatch> compare_optional(const std::optional<torch::Tensor>& e, const std::optional<torch::Tensor>& a,
                                         double rtol, double atol, const std::string& where) {
  if (e.has_value() != a.has_value())
    return mismatch(where, str_cat("expected ", e ? "a tensor" : "None", ", got ", a ? "a tensor" : "None"));
  if (e) return compare_tensors(*e, *a, rtol, atol, where);
  return std::nullopt;
}
}  // namespace

std::optional<Mismatch> compare_tensors(const torch::Tensor& expected, const torch::Tensor& actual, double rtol,
                                        double atol, const std::string& where) {
  if (!actual.defined()) return mismatch(where, "expected a tensor, got an undefined tensor");
  if (expected.scalar_type() != actual.scalar_type())
    return mismatch(where, str_cat("dtype: expected ", expected.scalar_type(), ", got ", actual.scalar_type()));
  if (expected.sizes() != actual.sizes())
    return mismatch(where, str_cat("shape: expected ", expected.sizes(), ", got ", actual.sizes()));
  auto e = expected.detach().to(torch::kCPU).contiguous().view({-1});
  auto a = actual.detach().to(torch::kCPU).contiguous().view({-1});
  if (e.is_floating_point()) {
    auto ed = e.to(torch::kDouble), ad = a.to(torch::kDouble);
    const auto* ep = ed.data_ptr<double>();
    const auto* ap = ad.data_ptr<double>();
    for (int64_t i = 0; i < ed.numel(); ++i) {
      const bool both_nan = std::isnan(ep[i]) && std::isnan(ap[i]);
      if (both_nan || ep[i] == ap[i]) continue;
      if (!(std::abs(ap[i] - ep[i]) <= atol + rtol * std::abs(ep[i])))
        return mismatch(where, str_cat("index ", i, ": expected ", scalar_str(e, i), ", got ", scalar_str(a, i)));
    }
    return std::nullopt;
  }
  auto diff = e.ne(a).nonzero();
  if (diff.numel() > 0) {
    const int64_t i = diff[0][0].item<int64_t>();
    return mismatch(where, str_cat("index ", i, ": expected ", scalar_str(e, i), ", got ", scalar_str(a, i)));
  }
  return std::nullopt;
}

std::optional<Mismatch> compare_values(const Value& expected, const Value& actual, double rtol, double atol,
                                       const std::string& where) {
  using K = Value::Kind;
  if (expected.kind != actual.kind)
    return mismatch(where, str_cat("expected ", kind_name(expected.kind), ", got ", kind_name(actual.kind)));
  switch (expected.kind) {
    case K::None: return std::nullopt;
    case K::Tensor: return compare_tensors(expected.tensor, actual.tensor, rtol, atol, where);
    case K::JaggedTensor: {
      if (auto m = compare_tensors(expected.jt.lengths(), actual.jt.lengths(), 0, 0, where + ".lengths")) return m;
      if (auto m = compare_tensors(expected.jt.values(), actual.jt.values(), rtol, atol, where + ".values")) return m;
      return compare_optional(expected.jt.weights_or_none(), actual.jt.weights_or_none(), rtol, atol,
                              where + ".weights");
    }
    case K::KeyedJaggedTensor: {
      if (auto m = compare_names(expected.kjt.keys(), actual.kjt.keys(), where + ".keys")) return m;
      if (auto m = compare_tensors(expected.kjt.lengths(), actual.kjt.lengths(), 0, 0, where + ".lengths")) return m;
      if (auto m = compare_tensors(expected.kjt.values(), actual.kjt.values(), rtol, atol, where + ".values")) return m;
      return compare_optional(expected.kjt.weights_or_none(), actual.kjt.weights_or_none(), rtol, atol,
                              where + ".weights");
    }
    case K::KeyedTensor: {
      if (auto m = compare_names(expected.kt.keys(), actual.kt.keys(), where + ".keys")) return m;
      if (expected.kt.length_per_key() != actual.kt.length_per_key())
        return mismatch(where + ".length_per_key", str_cat("expected ", c10::IntArrayRef(expected.kt.length_per_key()),
                                                           ", got ", c10::IntArrayRef(actual.kt.length_per_key())));
      if (expected.kt.key_dim() != actual.kt.key_dim())
        return mismatch(where + ".key_dim",
                        str_cat("expected ", expected.kt.key_dim(), ", got ", actual.kt.key_dim()));
      return compare_tensors(expected.kt.values(), actual.kt.values(), rtol, atol, where + ".values");
    }
    case K::Dict: {
      std::vector<std::string> ek, ak;
      for (const auto& kv : expected.dict) ek.push_back(kv.first);
      for (const auto& kv : actual.dict) ak.push_back(kv.first);
      if (auto m = compare_names(ek, ak, where + ".keys()")) return m;
      for (size_t i = 0; i < ek.size(); ++i)
        if (auto m = compare_values(expected.dict[i].second, actual.dict[i].second, rtol, atol, where + "." + ek[i]))
          return m;
      return std::nullopt;
    }
    case K::List:
    case K::Tuple: {
      if (expected.items.size() != actual.items.size())
        return mismatch(where, str_cat("expected ", expected.items.size(), " items, got ", actual.items.size()));
      for (size_t i = 0; i < expected.items.size(); ++i)
        if (auto m = compare_values(expected.items[i], actual.items[i], rtol, atol,
                                    where + "[" + std::to_string(i) + "]"))
          return m;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

namespace {
void add_float(torch::Tensor& acc, const torch::Tensor& t) {
  if (!t.defined() || !t.is_floating_point()) return;
  auto s = t.sum();
  acc = acc.defined() ? acc + s : s;
}
void add_optional(torch::Tensor& acc, const std::optional<torch::Tensor>& t) {
  if (t) add_float(acc, *t);
}
void accumulate(torch::Tensor& acc, const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::None: break;
    case K::Tensor: add_float(acc, v.tensor); break;
    case K::JaggedTensor:
      add_float(acc, v.jt.values());
      add_optional(acc, v.jt.weights_or_none());
      break;
    case K::KeyedJaggedTensor:
      add_float(acc, v.kjt.values());
      add_optional(acc, v.kjt.weights_or_none());
      break;
    case K::KeyedTensor: add_float(acc, v.kt.values()); break;
    case K::Dict:
      for (const auto& kv : v.dict) accumulate(acc, kv.second);
      break;
    case K::List:
    case K::Tuple:
      for (const auto& item : v.items) accumulate(acc, item);
      break;
  }
}
}  // namespace

torch::Tensor sum_of_float_outputs(const Value& v) {
  torch::Tensor acc;
  accumulate(acc, v);
  return acc;
}

}  // namespace recmod::conformance
