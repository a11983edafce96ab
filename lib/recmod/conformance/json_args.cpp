#include "recmod/conformance/json_args.h"

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod::conformance {

JsonArgs::JsonArgs(const nlohmann::ordered_json& args, std::string where) : args_(args), where_(std::move(where)) {
  if (!args_.is_object()) throw_input_error(where_, ": args must be an object, got ", args_.dump());
}

bool JsonArgs::has(const std::string& key) const { return args_.contains(key) && !args_.at(key).is_null(); }

const nlohmann::ordered_json& JsonArgs::at(const std::string& key) const {
  if (!args_.contains(key)) throw_input_error(where_, ": missing argument '", key, "'");
  return args_.at(key);
}

void JsonArgs::fail(const std::string& key, const std::string& what) const {
  throw_input_error(where_, ": argument '", key, "': ", what);
}

void JsonArgs::fail(const std::string& key, size_t index, const std::string& what) const {
  throw_input_error(where_, ": argument '", key, "'[", index, "]: ", what);
}

void JsonArgs::wrong_type(const std::string& key, const nlohmann::ordered_json& value) const {
  throw_input_error(where_, ": argument '", key, "': wrong type: ", value.dump());
}

void JsonArgs::expect_keys(const std::vector<std::string>& valid) const {
  for (const auto& item : args_.items())
    if (std::find(valid.begin(), valid.end(), item.key()) == valid.end())
      throw_input_error(where_, ": unknown argument '", item.key(), "'; expected one of ", join_names(valid));
}

}  // namespace recmod::conformance
