#include "recmod/train/config_history.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/io/atomic_file.h"

namespace recmod::train {

namespace fs = std::filesystem;

namespace {

YAML::Node parse(const std::string& text, const char* which) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(str_cat("the ", which, " config is not YAML: ", e.what()));
  }
}

std::string flow(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "";
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << node;
  std::string text = out.c_str();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

bool number_of(const std::string& text, double& value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  value = std::strtod(text.c_str(), &end);
  return errno == 0 && end == text.c_str() + text.size();
}

bool same_scalar(const std::string& a, const std::string& b) {
  if (a == b) return true;
  double x, y;
  return number_of(a, x) && number_of(b, y) && x == y;
}

bool absent(const YAML::Node& n) { return !n.IsDefined() || n.IsNull(); }

void diff(const YAML::Node& a, const YAML::Node& b, const std::string& path, std::vector<ConfigChange>& out) {
  if (absent(a) && absent(b)) return;
  // Maps key by key; an absent section counts as an empty map, so a new
  // `data: {eval: ...}` is the change data.eval.
  const bool a_map = a.IsDefined() && a.IsMap(), b_map = b.IsDefined() && b.IsMap();
  if ((a_map || absent(a)) && (b_map || absent(b))) {
    std::set<std::string> keys;
    if (a_map)
      for (const auto& item : a) keys.insert(item.first.as<std::string>());
    if (b_map)
      for (const auto& item : b) keys.insert(item.first.as<std::string>());
    for (const auto& key : keys)
      diff(a_map ? a[key] : YAML::Node(), b_map ? b[key] : YAML::Node(), path.empty() ? key : path + "." + key, out);
    return;
  }
  if (a.IsDefined() && b.IsDefined() && a.IsSequence() && b.IsSequence() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i) diff(a[i], b[i], str_cat(path, "[", i, "]"), out);
    return;
  }
  if (a.IsDefined() && b.IsDefined() && a.IsScalar() && b.IsScalar() && same_scalar(a.Scalar(), b.Scalar())) return;
  out.push_back({path, flow(a), flow(b)});
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(str_cat(path, ": cannot read it"));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string run_json_path(const RunDir& run) { return run.path() + "/run.json"; }

std::string version_path(const RunDir& run, size_t n) {
  return n == 0 ? run.config_path() : str_cat(run.path(), "/config.", n, ".yaml");
}

/// Whether `path` is `allowed` or a key under it.
bool covered(const std::string& path, const std::string& allowed) {
  return path == allowed ||
         (path.size() > allowed.size() && path.compare(0, allowed.size(), allowed) == 0 &&
          (path[allowed.size()] == '.' || path[allowed.size()] == '['));
}

}  // namespace

std::vector<ConfigChange> config_changes(const std::string& before_yaml, const std::string& after_yaml) {
  std::vector<ConfigChange> out;
  diff(parse(before_yaml, "run's"), parse(after_yaml, "new"), "", out);
  return out;
}

const std::vector<std::string>& resumable_changes() {
  static const std::vector<std::string> keys = {
      "training.epochs",       "training.steps",           "training.log_interval",
      "training.eval_interval", "training.checkpoint_interval", "training.batch_size",
      "data.eval",             "sharding"};
  return keys;
}

std::string describe_changes(const std::vector<ConfigChange>& changes) {
  std::string out;
  for (const auto& c : changes) {
    if (!out.empty()) out += ", ";
    out += str_cat(c.path.empty() ? "(the whole config)" : c.path, " (", c.before.empty() ? "absent" : c.before, " -> ",
                   c.after.empty() ? "absent" : c.after, ")");
  }
  return out;
}

std::vector<std::string> config_versions(const RunDir& run) {
  std::vector<std::string> out;
  for (size_t n = 0; fs::exists(version_path(run, n)); ++n) out.push_back(version_path(run, n));
  return out;
}

void start_config_history(const RunDir& run, const std::string& config_text, int64_t global_batch_size) {
  // Versions left by an earlier run in this directory (its checkpoint since
  // removed) are not this run's history.
  for (size_t n = 1; fs::exists(version_path(run, n)); ++n) fs::remove(version_path(run, n));
  run.save_config_text(config_text);
  io::write_file_atomically(run_json_path(run), nlohmann::json{{"global_batch_size", global_batch_size}}.dump() + "\n");
}

std::vector<ConfigChange> check_resume_config(const RunDir& run, const std::string& config_text,
                                              int64_t global_batch_size) {
  const auto versions = config_versions(run);
  if (versions.empty()) {  // a run directory from before config versions: start its history
    start_config_history(run, config_text, global_batch_size);
    return {};
  }
  const auto changes = config_changes(read_text(versions.back()), config_text);
  if (changes.empty()) return {};
  int64_t run_global_batch = -1;
  if (fs::exists(run_json_path(run))) {
    const auto record = nlohmann::json::parse(read_text(run_json_path(run)), nullptr, false);
    if (record.is_object()) run_global_batch = record.value("global_batch_size", int64_t{-1});
  }
  std::vector<ConfigChange> refused;
  std::string batch_note;
  for (const auto& c : changes) {
    bool allowed = false;
    for (const auto& key : resumable_changes()) allowed = allowed || covered(c.path, key);
    if (allowed && c.path == "training.batch_size" && global_batch_size != run_global_batch) {
      allowed = false;
      batch_note = run_global_batch < 0
                       ? "; this run's global batch is not recorded (no run.json), so its batch_size may not change"
                       : str_cat("; training.batch_size may change only with the number of ranks, keeping the "
                                 "global batch (",
                                 run_global_batch, " examples; this start's is ", global_batch_size, ")");
    }
    if (!allowed) refused.push_back(c);
  }
  if (!refused.empty()) {
    std::string keys;
    for (const auto& key : resumable_changes()) keys += (keys.empty() ? "" : ", ") + key;
    throw UsageError(str_cat(run.path(), ": --resume with a changed config: ", describe_changes(refused),
                             " differ from ", versions.back(), batch_note, ". A resumed run may change only ", keys,
                             " (docs/cli.md); to train with this config, start a new run (another --out; --init-from ",
                             run.model_path(), " starts from this run's values)"));
  }
  io::write_file_atomically(version_path(run, versions.size()), config_text);
  return changes;
}

}  // namespace recmod::train
