#include "recmod/train/checkpoint_keys.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/train/quantized_model.h"

namespace recmod::train {

namespace {
const char* kQuantizedCause =
    "it holds quantized tables (recmod quantize), which are for evaluation only (recmod eval); train or resume from "
    "the float checkpoint it was made from";
}  // namespace

KeyRename parse_rename(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos || spec.find('=', eq + 1) != std::string::npos || spec.size() == 1)
    throw UsageError(str_cat("--rename expects FROM=TO (a key prefix and its replacement, e.g. module.= or "
                             "model.=dlrm.), got '", spec, "'"));
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

std::vector<KeyRename> recmod_to_torchrec_dlrm() {
  return {{"sparse_arch.embedding_bags.", "sparse_arch.embedding_bag_collection.embedding_bags."},
          {"dense_arch._mlp.", "dense_arch.model._mlp."},
          {"over_arch._mlp.", "over_arch.model.0._mlp."},
          {"logit.", "over_arch.model.1."}};
}

std::vector<KeyRename> reversed(const std::vector<KeyRename>& renames) {
  std::vector<KeyRename> out;
  for (const auto& r : renames) out.push_back({r.to, r.from});
  return out;
}

const std::vector<std::string>& builtin_key_map_names() {
  static const std::vector<std::string> names{"torchrec-dlrm"};
  return names;
}

std::vector<KeyRename> builtin_key_map(const std::string& name, bool to_torchrec) {
  if (name != "torchrec-dlrm")
    throw UsageError(str_cat("unknown key map '", name, "'; the built-in maps are ", join_names(builtin_key_map_names())));
  return to_torchrec ? recmod_to_torchrec_dlrm() : reversed(recmod_to_torchrec_dlrm());
}

StateDict rename_keys(const StateDict& state, const std::vector<KeyRename>& renames, RenameReport* report) {
  RenameReport local;
  local.renamed_per_rule.assign(renames.size(), 0);
  StateDict out;
  std::map<std::string, std::string> origin_of;  // new key -> old key
  for (const auto& [key, value] : state) {
    std::string renamed = key;
    for (size_t i = 0; i < renames.size(); ++i)
      if (key.rfind(renames[i].from, 0) == 0) {
        renamed = renames[i].to + key.substr(renames[i].from.size());
        ++local.renamed_per_rule[i];
        break;
      }
    if (renamed == key) ++local.unchanged;
    auto [at, fresh] = origin_of.emplace(renamed, key);
    if (!fresh)
      throw CheckpointError(str_cat("renaming gives two keys the name '", renamed, "': '", at->second, "' and '", key,
                                    "'; check the --rename prefixes"));
    out.emplace_back(renamed, value);
  }
  if (report) *report = local;
  return out;
}

namespace {

std::string first_component(const std::string& key) { return key.substr(0, key.find('.')); }

bool looks_like_torchrec_dlrm(const std::vector<std::string>& keys) {
  for (const auto& k : keys)
    for (const auto& r : recmod_to_torchrec_dlrm())
      if (k.rfind(r.to, 0) == 0) return true;
  return false;
}

// A prefix that the checkpoint's keys have and the model's lack (e.g.
// "module." from DistributedDataParallel), or the other way round: the most
// common one over the foreign keys, as a --rename.
std::string prefix_hint(const std::vector<std::string>& foreign, const std::vector<std::string>& model_keys) {
  std::map<std::string, int64_t> votes;  // "FROM=TO"
  for (const auto& k : foreign)
    for (const auto& m : model_keys) {
      if (k.size() > m.size() && k.compare(k.size() - m.size(), m.size(), m) == 0 && k[k.size() - m.size() - 1] == '.')
        ++votes[k.substr(0, k.size() - m.size()) + "="];
      else if (m.size() > k.size() && m.compare(m.size() - k.size(), k.size(), k) == 0 && m[m.size() - k.size() - 1] == '.')
        ++votes["=" + m.substr(0, m.size() - k.size())];
    }
  std::string best;
  int64_t most = 0;
  for (const auto& [rename, n] : votes)
    if (n > most) best = rename, most = n;
  return most * 2 >= static_cast<int64_t>(foreign.size()) ? best : "";
}

}  // namespace

void check_checkpoint_keys(const StateDict& checkpoint, const std::vector<std::string>& model_keys,
                           const std::string& origin) {
  const std::set<std::string> known(model_keys.begin(), model_keys.end());
  std::vector<std::string> foreign;
  for (const auto& [k, _] : checkpoint)
    if (!known.count(k)) foreign.push_back(k);
  if (foreign.empty()) return;
  std::string cause;
  if (has_quantized_tables(checkpoint)) {
    cause = kQuantizedCause;
  } else if (looks_like_torchrec_dlrm(foreign)) {
    cause = str_cat("it looks like a TorchRec DLRM state_dict (torchrec.models.dlrm.DLRM); convert it with: recmod "
                    "convert-checkpoint ", origin, " OUT.pt --from torchrec-dlrm");
  } else if (const std::string rename = prefix_hint(foreign, model_keys); !rename.empty()) {
    cause = str_cat("the model has these keys under another prefix; rename them with: recmod convert-checkpoint ",
                    origin, " OUT.pt --rename ", rename);
  } else {
    std::set<std::string> tops;
    for (const auto& m : model_keys) tops.insert(first_component(m));
    cause = str_cat("the model's keys start with ", join_names({tops.begin(), tops.end()}),
                    " (recmod validate CONFIG lists its nodes); is it the config this checkpoint was trained with?");
  }
  throw CheckpointError(str_cat(origin, ": ", foreign.size(), " of the checkpoint's ", checkpoint.size(),
                                " keys are not the model's (e.g. '", foreign.front(), "'); ", cause));
}

std::vector<std::string> model_keys(config::ModelGraph& model) {
  std::vector<std::string> keys;
  for (const auto& [k, _] : state_dict(*model)) keys.push_back(k);
  return keys;
}

int64_t WarmStartReport::loaded() const {
  int64_t n = 0;
  for (const auto& node : nodes) n += node.loaded;
  return n;
}

std::string WarmStartReport::describe(const std::string& origin) const {
  std::string out = str_cat("init-from ", origin, ": ", loaded(), " keys loaded\n");
  for (const auto& n : nodes) {
    if (!n.selected) {
      out += str_cat("  ", n.node, ": not selected (--init-only), kept its initialisation\n");
      continue;
    }
    out += str_cat("  ", n.node, ": ", n.loaded, " of ", n.keys, " keys loaded");
    if (!n.missing.empty())
      out += str_cat("; not in the checkpoint, kept their initialisation: ", join_names(n.missing));
    out += "\n";
  }
  if (!unused.empty()) {
    std::vector<std::string> shown(unused.begin(), unused.begin() + std::min<size_t>(unused.size(), 5));
    out += str_cat("  checkpoint keys not used: ", unused.size(), " (", join_names(shown), unused.size() > 5 ? ", ..." : "",
                   ")\n");
  }
  return out;
}

WarmStartReport match_warm_start(const StateDict& target, const StateDict& checkpoint,
                                 const std::vector<std::string>& only, const std::string& origin,
                                 std::vector<std::string>& loaded) {
  std::vector<std::string> node_names;  // in the model's key order
  for (const auto& [k, _] : target)
    if (std::find(node_names.begin(), node_names.end(), first_component(k)) == node_names.end())
      node_names.push_back(first_component(k));
  for (const auto& name : only)
    if (std::find(node_names.begin(), node_names.end(), name) == node_names.end())
      throw UsageError(str_cat("--init-only ", name, ": the model has no node with parameters of that name; its nodes "
                               "with parameters are ", join_names(node_names)));
  auto selected = [&](const std::string& node) {
    return only.empty() || std::find(only.begin(), only.end(), node) != only.end();
  };
  if (has_quantized_tables(checkpoint)) throw CheckpointError(str_cat(origin, ": ", kQuantizedCause));
  WarmStartReport report;
  std::set<std::string> used;
  loaded.clear();
  for (const auto& name : node_names) {
    WarmStartNode node;
    node.node = name;
    node.selected = selected(name);
    for (const auto& [k, dst] : target) {
      if (first_component(k) != name) continue;
      ++node.keys;
      if (!node.selected) continue;
      const torch::Tensor* src = find_tensor(checkpoint, k);
      if (!src) {
        node.missing.push_back(k);
        continue;
      }
      if (src->sizes() != dst.sizes())
        throw CheckpointError(str_cat(origin, ": key '", k, "' has shape ", src->sizes(), ", the model expects ", dst.sizes()));
      if (src->scalar_type() != dst.scalar_type())
        throw CheckpointError(str_cat(origin, ": key '", k, "' has dtype ", src->scalar_type(), ", the model expects ",
                                      dst.scalar_type()));
      loaded.push_back(k);
      used.insert(k);
      ++node.loaded;
    }
    report.nodes.push_back(std::move(node));
  }
  for (const auto& [k, _] : checkpoint)
    if (!used.count(k)) report.unused.push_back(k);
  if (loaded.empty()) {
    std::vector<std::string> keys;
    for (const auto& [k, _] : target)
      if (selected(first_component(k))) keys.push_back(k);
    check_checkpoint_keys(checkpoint, keys, origin);  // names the likely cause when the keys are foreign
    throw CheckpointError(str_cat(origin, ": none of its ", checkpoint.size(), " keys is a key of the selected nodes"));
  }
  return report;
}

WarmStartReport warm_start(config::ModelGraph& model, const StateDict& checkpoint, const std::vector<std::string>& only,
                           const std::string& origin) {
  const StateDict target = state_dict(*model);
  std::vector<std::string> loaded;
  WarmStartReport report = match_warm_start(target, checkpoint, only, origin, loaded);
  torch::NoGradGuard no_grad;
  for (const auto& k : loaded) {
    torch::Tensor dst = *find_tensor(target, k);
    dst.copy_(*find_tensor(checkpoint, k));
  }
  return report;
}

}  // namespace recmod::train
