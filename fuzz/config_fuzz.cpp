// Model configs: YAML text -> ModelConfig. Any input must either parse or
// throw ConfigError (never crash, hang, or throw something else).
#include <cstdint>
#include <string>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"
#include "recmod/config/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto root = recmod::config::ConfigNode::load_string(text, "fuzz.yaml");
    auto config = recmod::config::parse_model_config(root);
    (void)config;
  } catch (const recmod::ConfigError&) {
  }
  return 0;
}
