#include "recmod/config/yaml_args.h"

namespace recmod::config {

// Each name is checked at its own position.
std::vector<std::string> YamlArgs::get_name_list(const std::string& key, const char* what) const {
  std::vector<std::string> out;
  for (const auto& item : node_[key].items()) out.push_back(item.as_name(what));
  return out;
}

}  // namespace recmod::config
