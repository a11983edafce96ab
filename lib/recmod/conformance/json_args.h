#pragma once
// Module arguments from a golden case's recorded "args" object
// (../shared/golden/FORMAT.md): errors are InputErrors naming the module (or
// the table) and the argument.
#include <nlohmann/json.hpp>

#include "recmod/common/args.h"

namespace recmod::conformance {

class JsonArgs : public ModuleArgs {
 public:
  /// `where` names the holder in messages: "MLP", "tables[2]".
  JsonArgs(const nlohmann::ordered_json& args, std::string where);

  bool has(const std::string& key) const override;
  int64_t get_int(const std::string& key) const override { return get<int64_t>(key); }
  double get_double(const std::string& key) const override { return get<double>(key); }
  bool get_bool(const std::string& key) const override { return get<bool>(key); }
  std::string get_string(const std::string& key) const override { return get<std::string>(key); }
  std::vector<int64_t> get_int_list(const std::string& key) const override { return get<std::vector<int64_t>>(key); }
  std::string get_name(const std::string& key, const char*) const override { return get<std::string>(key); }
  std::vector<std::string> get_name_list(const std::string& key, const char*) const override {
    return get<std::vector<std::string>>(key);
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const override;
  [[noreturn]] void fail(const std::string& key, size_t index, const std::string& what) const override;

  using ModuleArgs::get_bool;
  using ModuleArgs::get_double;
  using ModuleArgs::get_int;
  using ModuleArgs::get_string;

  /// Throws for a key outside `valid`, listing the valid ones (TorchRec's
  /// signature is the whole vocabulary of a recorded case).
  void expect_keys(const std::vector<std::string>& valid) const;

 private:
  const nlohmann::ordered_json& at(const std::string& key) const;
  [[noreturn]] void wrong_type(const std::string& key, const nlohmann::ordered_json& value) const;
  template <typename T>
  T get(const std::string& key) const {
    const auto& value = at(key);
    try {
      return value.get<T>();
    } catch (const nlohmann::json::exception&) {
      wrong_type(key, value);
    }
  }

  const nlohmann::ordered_json& args_;
  std::string where_;
};

}  // namespace recmod::conformance
