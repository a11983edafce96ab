#pragma once
// One way to read a module's arguments, whatever holds them: a YAML node of a
// model config (config/yaml_args.h) or the "args" object of a golden case
// recorded from TorchRec (conformance/json_args.h). Each module family reads
// its options once, over this interface (modules/module_args.h), so the two
// front ends cannot drift apart in names, defaults or checks. Argument names
// are TorchRec's parameter names.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace recmod {

class ModuleArgs {
 public:
  virtual ~ModuleArgs() = default;

  /// Present and not null.
  virtual bool has(const std::string& key) const = 0;

  // Required arguments: a missing key or a value of the wrong type is an
  // error at the key (a YAML position, or the module and argument name).
  virtual int64_t get_int(const std::string& key) const = 0;
  virtual double get_double(const std::string& key) const = 0;
  virtual bool get_bool(const std::string& key) const = 0;
  virtual std::string get_string(const std::string& key) const = 0;
  virtual std::vector<int64_t> get_int_list(const std::string& key) const = 0;
  /// A name that becomes part of a state_dict key (a table, a feature), or a
  /// list of them. The config holds user-written names to its identifier
  /// rule; golden cases take TorchRec's names as they were recorded.
  virtual std::string get_name(const std::string& key, const char* what) const = 0;
  virtual std::vector<std::string> get_name_list(const std::string& key, const char* what) const = 0;

  /// Throws the front end's error (ConfigError with file:line:col,
  /// InputError naming the module) about the argument `key`.
  [[noreturn]] virtual void fail(const std::string& key, const std::string& what) const = 0;
  /// The same about item `index` of the list `key`.
  [[noreturn]] virtual void fail(const std::string& key, size_t index, const std::string& what) const = 0;

  // Built on the above, the same for every front end.
  int64_t get_int(const std::string& key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
  double get_double(const std::string& key, double fallback) const { return has(key) ? get_double(key) : fallback; }
  bool get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
  std::string get_string(const std::string& key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
  }
  /// An integer > 0.
  int64_t positive_int(const std::string& key) const;
  int64_t positive_int(const std::string& key, int64_t fallback) const;
  /// A non-empty list of integers > 0 (layer sizes).
  std::vector<int64_t> positive_int_list(const std::string& key) const;
  /// One of `choices` (`fallback` when absent).
  std::string one_of(const std::string& key, const std::vector<std::string>& choices,
                     const std::string& fallback) const;
};

}  // namespace recmod
