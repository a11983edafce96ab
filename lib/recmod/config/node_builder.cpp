#include "recmod/config/node_builder.h"

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod::config {

void fail_at_inputs(const NodeSpec& spec, const std::string& what) {
  if (auto at = spec.yaml.find("inputs")) at->fail(what);
  if (auto at = spec.yaml.find("input")) at->fail(what);
  spec.yaml.fail(what);
}

void expect_num_inputs(const NodeSpec& spec, const std::vector<Port>& inputs, size_t n) {
  if (inputs.size() != n)
    fail_at_inputs(spec, str_cat(spec.type, " takes ", n, " input", n == 1 ? "" : "s", ", got ", inputs.size()));
}

int64_t expect_dense_input(const NodeSpec& spec, const Port& input, const std::string& type) {
  if (!input.shape.is_dense_like())
    fail_at_inputs(spec, str_cat(type, " expects a dense (B, N) input, but '", input.name, "' gives ",
                                 input.shape.kind_name()));
  if (input.shape.width <= 0) fail_at_inputs(spec, str_cat(type, ": input '", input.name, "' has width 0"));
  return input.shape.width;
}

void expect_sparse_input(const NodeSpec& spec, const Port& input, const std::vector<std::string>& needed,
                         const std::string& type) {
  if (input.shape.kind != ValueKind::Sparse)
    fail_at_inputs(spec, str_cat(type, " expects sparse features (features.sparse), but '", input.name, "' gives ",
                                 input.shape.kind_name()));
  for (const auto& key : needed) {
    if (std::find(input.shape.keys.begin(), input.shape.keys.end(), key) == input.shape.keys.end())
      fail_at_inputs(spec, str_cat(type, " uses feature '", key, "', which '", input.name, "' does not have; it has ",
                                   join_names(input.shape.keys)));
  }
}

}  // namespace recmod::config
