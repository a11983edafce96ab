#include "recmod/config/config_node.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <yaml-cpp/depthguard.h>

#include "recmod/common/errors.h"

namespace recmod::config {

namespace {

// yaml-cpp marks are 0-based; a default Mark (no position) is pos=line=col=0
// only for synthesized nodes, null_mark() is -1.
bool has_position(const YAML::Mark& m) { return m.line >= 0; }

std::string position_of(const std::string& file, const YAML::Mark& m) {
  if (!has_position(m)) return file;
  return str_cat(file, ":", m.line + 1, ":", m.column + 1);
}

// The name as it can be shown: bytes outside printable ASCII as \xNN.
std::string printable(const std::string& name) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (const char ch : name.substr(0, 80)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return name.size() > 80 ? out + "..." : out;
}

// Deeper than any config needs (they nest a few levels), far below where
// yaml-cpp gives up with "bad file" (its recursion guard, about 1000 levels).
constexpr int kMaxNesting = 100;

std::string nesting_error(const std::string& where) {
  return str_cat(where, ": nesting deeper than ", kMaxNesting,
                 " levels (lists and maps inside each other); a config needs a few");
}

/// "line:col" of byte `offset` of `text` (1-based, columns in bytes).
std::string position_at(const std::string& file, const std::string& text, size_t offset) {
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i)
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  return str_cat(file, ":", line, ":", offset - line_start + 1);
}

// A config is text: yaml-cpp reads NUL bytes and other control characters
// as parts of scalars or as odd escapes ("unknown escape character"), which
// hides that the file is binary (or UTF-16) altogether.
void reject_binary(const std::string& text, const std::string& file) {
  if (text.size() >= 2 && ((text[0] == '\xff' && text[1] == '\xfe') || (text[0] == '\xfe' && text[1] == '\xff')))
    throw ConfigError(str_cat(file, ": not a text file this reader takes: it starts with a UTF-16 byte order mark; "
                                    "save the config as UTF-8"));
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
      throw ConfigError(str_cat(position_at(file, text, i), ": not a text file: byte ", i, " is 0x",
                                "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15],
                                " (a control character; a config is UTF-8 text, with tabs and newlines only)"));
  }
}

// yaml-cpp tags a quoted scalar "!" (a plain one "?"), and folds a quote
// left open on the last line into the scalar instead of failing. A quoted
// scalar must end with its quote before the end of the text.
void check_quote_closed(const YAML::Node& node, const std::string& text, const std::string& file) {
  if (!node.IsScalar() || node.Tag() != "!" || !has_position(node.Mark())) return;
  const auto start = static_cast<size_t>(node.Mark().pos);
  if (start >= text.size() || (text[start] != '"' && text[start] != '\'')) return;
  const char quote = text[start];
  for (size_t i = start + 1; i < text.size(); ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;  // an escape: the next character is not the end
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' inside single quotes is a quote
      } else {
        return;
      }
    }
  }
  throw ConfigError(str_cat(position_of(file, node.Mark()), ": the string opened with ", quote,
                            " here is never closed (expected a closing ", quote, " before the end of the file)"));
}

// Walks every node once (iteratively: no recursion on deep input; an
// aliased node is walked once) and refuses what yaml-cpp lets through:
// a key twice in one map (YAML forbids it; yaml-cpp keeps both and lookups
// find the first), nesting deeper than kMaxNesting, a quote left open.
void check_tree(const YAML::Node& root, const std::string& text, const std::string& file) {
  std::vector<std::pair<YAML::Node, int>> stack{{root, 0}};
  std::unordered_set<int> walked;  // start offsets of the lists and maps walked: an alias has its anchor's
  while (!stack.empty()) {
    auto [node, depth] = stack.back();
    stack.pop_back();
    check_quote_closed(node, text, file);
    if ((node.IsMap() || node.IsSequence()) && !walked.insert(node.Mark().pos).second) continue;
    if ((node.IsMap() || node.IsSequence()) && depth >= kMaxNesting)
      throw ConfigError(nesting_error(position_of(file, node.Mark())));
    if (node.IsSequence()) {
      for (const auto& item : node) stack.emplace_back(item, depth + 1);
    } else if (node.IsMap()) {
      std::unordered_map<std::string, YAML::Mark> keys;
      for (const auto& kv : node) {
        if (kv.first.IsScalar()) {
          check_quote_closed(kv.first, text, file);
          const auto [first, inserted] = keys.emplace(kv.first.Scalar(), kv.first.Mark());
          if (!inserted)
            throw ConfigError(str_cat(position_of(file, kv.first.Mark()), ": duplicate key '", printable(first->first),
                                      "' (first at ", position_of(file, first->second),
                                      "); each key may appear once in a map"));
        } else {
          stack.emplace_back(kv.first, depth + 1);
        }
        stack.emplace_back(kv.second, depth + 1);
      }
    }
  }
}

}  // namespace

ConfigNode::ConfigNode(YAML::Node node, std::shared_ptr<const std::string> file, std::string path, YAML::Mark mark)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)), mark_(mark) {}

ConfigNode ConfigNode::load_string(const std::string& text, const std::string& name) {
  auto file = std::make_shared<const std::string>(name);
  try {
    reject_binary(text, name);
    YAML::Node root = YAML::Load(text);
    check_tree(root, text, name);
    return ConfigNode(root, file, "", root.IsDefined() ? root.Mark() : YAML::Mark());
  } catch (const YAML::DeepRecursion& e) {
    throw ConfigError(nesting_error(position_of(name, e.mark)));
  } catch (const YAML::ParserException& e) {
    throw ConfigError(str_cat(position_of(name, e.mark), ": invalid YAML: ", e.msg));
  }
}

ConfigNode ConfigNode::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(str_cat(path, ": cannot open the config file (does it exist?)"));
  std::stringstream text;
  text << in.rdbuf();
  return load_string(text.str(), path);
}

int ConfigNode::line() const { return has_position(mark_) ? mark_.line + 1 : 0; }
int ConfigNode::column() const { return has_position(mark_) ? mark_.column + 1 : 0; }
std::string ConfigNode::where() const {
  if (overrides_)
    for (auto it = overrides_->rbegin(); it != overrides_->rend(); ++it) {  // the last flag wins
      const std::string& key = it->first;
      if (path_.compare(0, key.size(), key) == 0 &&
          (path_.size() == key.size() || path_[key.size()] == '.' || path_[key.size()] == '['))
        return it->second;
    }
  return position_of(*file_, mark_);
}

void ConfigNode::fail(const std::string& what) const {
  throw ConfigError(str_cat(where(), ": ", path_.empty() ? "" : path_ + ": ", what));
}

std::string ConfigNode::describe() const {
  if (is_null()) return "nothing";
  if (is_map()) return "a map";
  if (is_list()) return "a list";
  return "'" + node_.Scalar() + "'";
}

ConfigNode ConfigNode::child(const YAML::Node& node, std::string path) const {
  YAML::Mark mark = node.IsDefined() && has_position(node.Mark()) ? node.Mark() : mark_;
  ConfigNode out(node, file_, std::move(path), mark);
  out.overrides_ = overrides_;
  return out;
}

namespace {

/// One step of an override's key: a map key, or a list index.
struct KeyStep {
  std::string key;
  int64_t index = -1;  // >= 0: a list index
};

std::vector<KeyStep> parse_key_path(const std::string& path, const std::string& flag) {
  std::vector<KeyStep> steps;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '[') {
      const auto close = path.find(']', i);
      const std::string digits = close == std::string::npos ? "" : path.substr(i + 1, close - i - 1);
      if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        throw ConfigError(str_cat(flag, ": expected a list index like [0] at '", path.substr(i), "'"));
      steps.push_back({"", std::stoll(digits)});
      i = close + 1;
      if (i < path.size() && path[i] == '.') ++i;
      continue;
    }
    const auto end = path.find_first_of(".[", i);
    const std::string key = path.substr(i, end == std::string::npos ? std::string::npos : end - i);
    if (key.empty()) throw ConfigError(str_cat(flag, ": empty key in '", path, "'"));
    steps.push_back({key, -1});
    i = end == std::string::npos ? path.size() : end + (path[end] == '.' ? 1 : 0);
  }
  if (steps.empty()) throw ConfigError(str_cat(flag, ": expected KEY=VALUE with a key such as training.batch_size"));
  return steps;
}

// The path as ConfigNode spells it: "a.b[2].c".
std::string spelled(const std::vector<KeyStep>& steps) {
  std::string out;
  for (const auto& s : steps) out += s.index >= 0 ? str_cat("[", s.index, "]") : (out.empty() ? "" : ".") + s.key;
  return out;
}

void apply_override(YAML::Node root, const std::vector<KeyStep>& steps, const YAML::Node& value, const std::string& flag) {
  YAML::Node at = root;
  for (size_t i = 0; i < steps.size(); ++i) {
    const bool last = i + 1 == steps.size();
    const auto& step = steps[i];
    const std::string so_far = spelled(std::vector<KeyStep>(steps.begin(), steps.begin() + static_cast<long>(i)));
    if (step.index >= 0) {
      if (!at.IsSequence())
        throw ConfigError(str_cat(flag, ": ", so_far.empty() ? "the config" : so_far, " is not a list"));
      if (step.index >= static_cast<int64_t>(at.size()))
        throw ConfigError(str_cat(flag, ": ", so_far, " has ", at.size(), " items; index ", step.index, " is past its end"));
      if (last) {
        at[static_cast<size_t>(step.index)] = value;
        return;
      }
      at.reset(at[static_cast<size_t>(step.index)]);
      continue;
    }
    if (at.IsNull()) at = YAML::Node(YAML::NodeType::Map);  // a map on the way, created
    if (!at.IsMap())
      throw ConfigError(str_cat(flag, ": ", so_far.empty() ? "the config" : so_far, " is not a map (it is ",
                                at.IsSequence() ? "a list" : "'" + at.Scalar() + "'", ")"));
    if (last) {
      at[step.key] = value;
      return;
    }
    if (!at[step.key]) at[step.key] = YAML::Node(YAML::NodeType::Map);
    YAML::Node next = at[step.key];
    at.reset(next);
  }
}

}  // namespace

namespace {
// A deep copy in which no node appears twice (the emitter would print a
// shared node as an anchor and aliases).
YAML::Node unshared(const YAML::Node& node) {
  if (node.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : node) out[kv.first.Scalar()] = unshared(kv.second);
    out.SetStyle(node.Style());
    return out;
  }
  if (node.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& item : node) out.push_back(unshared(item));
    out.SetStyle(node.Style());
    return out;
  }
  if (node.IsScalar()) return YAML::Node(node.Scalar());
  return YAML::Node();
}
}  // namespace

std::string ConfigNode::emit() const {
  YAML::Emitter out;
  out << unshared(node_);
  return out.c_str();
}

ConfigNode ConfigNode::with_overrides(const std::vector<std::string>& overrides) const {
  if (overrides.empty()) return *this;
  auto origins = std::make_shared<Overrides>(overrides_ ? *overrides_ : Overrides{});
  YAML::Node root = node_;
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& text : overrides) {
    const std::string flag = "--set " + text;
    const auto eq = text.find('=');
    if (eq == std::string::npos)
      throw ConfigError(str_cat(flag, ": expected KEY=VALUE, e.g. --set training.batch_size=4096"));
    const auto steps = parse_key_path(text.substr(0, eq), flag);
    YAML::Node value;
    try {
      reject_binary(text.substr(eq + 1), flag);
      value = YAML::Load(text.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw ConfigError(str_cat(flag, ": the value is not valid YAML: ", e.msg));
    }
    apply_override(root, steps, value, flag);
    origins->emplace_back(spelled(steps), flag);
  }
  ConfigNode out(root, file_, path_, mark_);
  out.overrides_ = std::move(origins);
  return out;
}

std::string ConfigNode::key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

void ConfigNode::expect_map() const {
  if (!is_map()) fail("expected a map, found " + describe());
}
void ConfigNode::expect_list() const {
  if (!is_list()) fail("expected a list, found " + describe());
}
void ConfigNode::expect_scalar(const char* expected) const {
  if (!is_scalar() || node_.Tag() == "~" || is_null()) fail(str_cat("expected ", expected, ", found ", describe()));
}

bool ConfigNode::has(const std::string& key) const { return is_map() && node_[key].IsDefined(); }

std::optional<ConfigNode> ConfigNode::find(const std::string& key) const {
  expect_map();
  YAML::Node value = node_[key];
  if (!value.IsDefined()) return std::nullopt;
  return child(value, key_path(key));
}

ConfigNode ConfigNode::operator[](const std::string& key) const {
  auto value = find(key);
  if (!value) fail("missing required field '" + key + "'");
  return *value;
}

std::vector<std::string> ConfigNode::keys() const {
  expect_map();
  std::vector<std::string> out;
  for (const auto& kv : node_) out.push_back(key_text(kv.first));
  return out;
}

std::string ConfigNode::key_text(const YAML::Node& key) const {
  // YAML allows any node as a key ("? [a, b]: 1", "? {a: 1}: 2"); a config's
  // keys are names.
  if (!key.IsScalar()) {
    ConfigNode at_key = child(key, path_);
    at_key.fail(str_cat("expected a name as key, found ", at_key.describe()));
  }
  return key.Scalar();
}

void ConfigNode::allow_keys(const std::vector<std::string>& valid) const {
  expect_map();
  for (const auto& kv : node_) {
    std::string key = key_text(kv.first);
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      ConfigNode at_key = child(kv.first, key_path(key));
      at_key.fail(str_cat("unknown key '", key, "'; valid keys are ", join_names(valid)));
    }
  }
}

size_t ConfigNode::size() const {
  expect_list();
  return node_.size();
}

ConfigNode ConfigNode::at(size_t i) const {
  expect_list();
  return child(node_[i], str_cat(path_, "[", i, "]"));
}

std::vector<ConfigNode> ConfigNode::items() const {
  std::vector<ConfigNode> out;
  for (size_t i = 0; i < size(); ++i) out.push_back(at(i));
  return out;
}

std::string ConfigNode::as_string() const {
  expect_scalar("a string");
  return node_.Scalar();
}

int64_t ConfigNode::as_int() const {
  expect_scalar("an integer");
  try {
    return node_.as<int64_t>();
  } catch (const YAML::Exception&) {
    fail("expected an integer, found " + describe());
  }
}

double ConfigNode::as_double() const {
  expect_scalar("a number");
  try {
    double v = node_.as<double>();
    if (!std::isfinite(v)) fail("expected a finite number, found " + describe());
    return v;
  } catch (const YAML::Exception&) {
    fail("expected a number, found " + describe());
  }
}

bool ConfigNode::as_bool() const {
  expect_scalar("true or false");
  try {
    return node_.as<bool>();
  } catch (const YAML::Exception&) {
    fail("expected true or false, found " + describe());
  }
}

std::vector<int64_t> ConfigNode::as_int_list() const {
  if (!is_list()) fail("expected a list of integers, found " + describe());
  std::vector<int64_t> out;
  for (const auto& item : items()) out.push_back(item.as_int());
  return out;
}

std::vector<std::string> ConfigNode::as_string_list() const {
  if (!is_list()) fail("expected a list of names, found " + describe());
  std::vector<std::string> out;
  for (const auto& item : items()) out.push_back(item.as_string());
  return out;
}

std::string ConfigNode::get_string(const std::string& key, const std::string& fallback) const {
  auto v = find(key);
  return v ? v->as_string() : fallback;
}
int64_t ConfigNode::get_int(const std::string& key, int64_t fallback) const {
  auto v = find(key);
  return v ? v->as_int() : fallback;
}
double ConfigNode::get_double(const std::string& key, double fallback) const {
  auto v = find(key);
  return v ? v->as_double() : fallback;
}
bool ConfigNode::get_bool(const std::string& key, bool fallback) const {
  auto v = find(key);
  return v ? v->as_bool() : fallback;
}

int64_t ConfigNode::positive_int(const std::string& key) const {
  ConfigNode v = (*this)[key];
  int64_t x = v.as_int();
  if (x <= 0) v.fail(str_cat("must be > 0, got ", x));
  return x;
}

int64_t ConfigNode::positive_int(const std::string& key, int64_t fallback) const {
  return has(key) ? positive_int(key) : fallback;
}

std::string ConfigNode::one_of(const std::vector<std::string>& choices) const {
  std::string v = as_string();
  if (std::find(choices.begin(), choices.end(), v) == choices.end())
    fail(str_cat("expected one of ", join_names(choices), ", found '", v, "'"));
  return v;
}

std::string ConfigNode::why_not_a_name(const std::string& name) {
  constexpr size_t kMaxName = 64;
  if (name.empty()) return "it is empty";
  if (name.size() > kMaxName) return str_cat("it is ", name.size(), " bytes long (at most ", kMaxName, ")");
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    const bool ok = std::isalnum(c) != 0 || c == '_' || (c == '-' && i > 0);
    if (ok && c < 0x80) continue;
    if (c >= 0x80 || c < 0x20 || c == 0x7f)
      return str_cat("byte ", i, " is not printable ASCII (names use letters, digits, '_' and '-', not first)");
    return str_cat("character ", i, " is '", static_cast<char>(c),
                   "' (names use letters, digits, '_' and '-', not first)");
  }
  return "";
}

std::string ConfigNode::as_name(const char* what) const {
  expect_scalar(what);
  const std::string& name = node_.Scalar();
  const std::string why = why_not_a_name(name);
  if (!why.empty()) fail(str_cat("'", printable(name), "' is not valid as ", what, ": ", why));
  return name;
}

void ConfigNode::expect_name_keys(const char* what) const {
  expect_map();
  for (const auto& kv : node_) {
    const std::string key = key_text(kv.first);
    const std::string why = why_not_a_name(key);
    if (!why.empty())
      child(kv.first, key_path(printable(key)))
          .fail(str_cat("'", printable(key), "' is not valid as ", what, ": ", why));
  }
}

}  // namespace recmod::config
