#include "recmod/data/jsonl.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/data/delimited.h"
#include "recmod/data/vocab.h"

namespace recmod::data {

namespace {

using nlohmann::json;

/// How a JSON value appears in a message: its text, cut at 60 characters.
std::string shown_json(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 60) + "..." : s;
}

/// Thrown inside one line's parsing; the reader adds "file:line: ".
struct RecordError {
  std::string message;
};

template <typename... Args>
[[noreturn]] void bad(const Args&... args) {
  throw RecordError{str_cat(args...)};
}

void read_numbers(const json& v, int64_t count, const char* key, std::vector<float>& out) {
  if (!v.is_array() || static_cast<int64_t>(v.size()) != count)
    bad("expected \"", key, "\" to be a list of ", count, " numbers, found ", shown_json(v));
  for (const auto& x : v) {
    if (!x.is_number()) bad("expected \"", key, "\" to hold numbers, found ", shown_json(x));
    const float value = x.get<float>();
    if (!std::isfinite(value)) bad("expected \"", key, "\" to hold finite float32 numbers, found ", shown_json(x));
    out.push_back(value);
  }
}

void read_labels(const json& v, int64_t num_labels, const JsonlOptions& options, std::vector<float>& out) {
  const size_t first = out.size();
  if (v.is_number() && num_labels == 1) {
    const float value = v.get<float>();
    if (!std::isfinite(value)) bad("expected \"label\" to be a finite float32 number, found ", shown_json(v));
    out.push_back(value);
  } else {
    if (!v.is_array()) bad("expected \"label\" to be a number or a list of ", num_labels, " numbers, found ", shown_json(v));
    read_numbers(v, num_labels, "label", out);
  }
  for (size_t i = first; i < out.size(); ++i) {
    const size_t k = i - first;
    const bool binary = k < options.binary_per_label.size() ? options.binary_per_label[k] : options.binary_labels;
    if (binary && out[i] != 0.0f && out[i] != 1.0f)
      bad("expected \"label\"", num_labels > 1 ? str_cat("[", k, "]") : std::string(),
          " 0 or 1 (the loss is binary cross-entropy), found ", shown_json(v));
  }
}

/// How one feature's ids are read.
struct IdRules {
  uint64_t string_range = 0;  // hash strings mod this (0: strings are bad)
  uint64_t seed = 0;
  int64_t limit = 0;                   // integer ids in [0, limit) (0: any)
  const ColumnVocab* vocab = nullptr;  // strings and integers (by their text) through it
  int64_t oov_buckets = 1;
};

void read_ids(const json& v, const std::string& feature, const IdRules& rules, std::vector<int64_t>& out) {
  const uint64_t string_range = rules.string_range, seed = rules.seed;
  const int64_t limit = rules.limit;
  if (!v.is_array()) bad("expected the ids of \"", feature, "\" to be a list of integers, found ", shown_json(v));
  if (rules.vocab) {
    for (const auto& x : v) {
      if (x.is_string()) {
        out.push_back(rules.vocab->id(x.get_ref<const std::string&>(), rules.oov_buckets, seed));
      } else if (x.is_number_integer()) {
        const std::string text =
            x.is_number_unsigned() ? std::to_string(x.get<uint64_t>()) : std::to_string(x.get<int64_t>());
        out.push_back(rules.vocab->id(text, rules.oov_buckets, seed));
      } else {
        bad("expected string or integer ids for \"", feature, "\" (it has a vocabulary), found ", shown_json(x));
      }
    }
    return;
  }
  for (const auto& x : v) {
    if (x.is_string()) {
      if (string_range == 0)
        bad("expected integer ids for \"", feature, "\", found the string ", shown_json(x),
            " (string ids need a range to be hashed into: the feature's range or its table)");
      out.push_back(hash_string_id(x.get_ref<const std::string&>(), seed, string_range));
      continue;
    }
    if (x.is_number_unsigned() && x.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad("expected ids of \"", feature, "\" to fit in int64, found ", shown_json(x));
    if (!x.is_number_integer()) bad("expected integer ids for \"", feature, "\", found ", shown_json(x));
    const int64_t id = x.get<int64_t>();
    if (limit > 0 && (id < 0 || id >= limit))
      bad("expected ids of \"", feature, "\" in [0, ", limit, ") (its table has ", limit,
          " rows and the feature is not hashed), found ", id, "; give the feature a hash: mod|murmur with a range, "
          "or the table more rows");
    out.push_back(id);
  }
}

void read_bag(const json& v, const std::string& feature, bool weighted, bool may_weigh, const IdRules& rules,
              SparseColumn& col) {
  const size_t first = col.ids.size();
  if (v.is_object()) {
    for (const auto& [key, _] : v.items())
      if (key != "ids" && key != "weights")
        bad("expected keys \"ids\" and \"weights\" in \"", feature, "\", found \"", key, "\"");
    if (!v.contains("ids")) bad("expected \"ids\" in \"", feature, "\", found ", shown_json(v));
    read_ids(v["ids"], feature, rules, col.ids);
    if (v.contains("weights")) {
      if (!weighted) bad("expected no weights for \"", feature, "\" (the schema is unweighted), found ", shown_json(v));
      if (!may_weigh)
        bad("expected no weights for \"", feature, "\" (declare it weighted in the config: features.sparse: ",
            "{name: ", feature, ", weighted: true}), found ", shown_json(v));
      const auto& w = v["weights"];
      const auto count = static_cast<int64_t>(col.ids.size() - first);
      if (!w.is_array() || static_cast<int64_t>(w.size()) != count)
        bad("expected \"weights\" of \"", feature, "\" to be a list of ", count, " numbers (one per id), found ",
            shown_json(w));
      for (const auto& x : w) {
        if (!x.is_number()) bad("expected numeric weights for \"", feature, "\", found ", shown_json(x));
        const float value = x.get<float>();
        if (!std::isfinite(value)) bad("expected finite float32 weights for \"", feature, "\", found ", shown_json(x));
        col.weights.push_back(value);
      }
    } else if (weighted) {
      col.weights.resize(col.ids.size(), 1.0f);
    }
  } else {
    read_ids(v, feature, rules, col.ids);
    if (weighted) col.weights.resize(col.ids.size(), 1.0f);
  }
}

void parse_record(std::string_view line, const DataSchema& schema, const JsonlOptions& options, ExampleColumns& out) {
  json j;
  // The keys of each open object, innermost last: nlohmann keeps the last of
  // two equal keys, other JSON readers the first, so a duplicate is refused.
  // Small objects (all of a valid record's) are searched linearly; a hostile
  // one with many keys goes to a hash set, so a line stays O(its length).
  struct Keys {
    std::vector<std::string> few;
    std::unordered_set<std::string> many;
  };
  std::vector<Keys> open_keys;
  const json::parser_callback_t no_duplicates = [&open_keys](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_keys.empty()) open_keys.pop_back();
    } else if (event == json::parse_event_t::key && !open_keys.empty()) {
      constexpr size_t kFew = 32;
      Keys& keys = open_keys.back();
      const auto& key = parsed.get_ref<const std::string&>();
      const bool seen = keys.few.size() < kFew ? std::find(keys.few.begin(), keys.few.end(), key) != keys.few.end()
                                               : !keys.many.insert(key).second;
      if (seen) bad("expected each key once in an object, found \"", key, "\" twice");
      if (keys.few.size() < kFew) {
        keys.few.push_back(key);
        if (keys.few.size() == kFew) keys.many.insert(keys.few.begin(), keys.few.end());
      }
    }
    return true;
  };
  try {
    j = json::parse(line.begin(), line.end(), no_duplicates);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 9: ..."
    const std::string what = e.what();
    const auto at = what.find("parse error");
    bad("expected a JSON object, found invalid JSON (", at == std::string::npos ? what : what.substr(at), ")");
  } catch (const json::out_of_range& e) {
    // nlohmann refuses numbers beyond double's range (1e999) while parsing,
    // before any field is known.
    const std::string what = e.what();
    const auto at = what.find("number overflow");
    bad("expected finite numbers, found one out of range (", at == std::string::npos ? what : what.substr(at), ")");
  }
  if (!j.is_object()) bad("expected a JSON object, found ", shown_json(j));
  for (const auto& [key, _] : j.items())
    if (key != "label" && key != "dense" && key != "sparse" && !(key == "weight" && schema.sample_weights))
      bad("expected keys \"label\", \"dense\", \"sparse\"", schema.sample_weights ? ", \"weight\"" : "",
          ", found \"", key, "\"", key == "weight" ? " (sample weights: set data.sample_weights: true)" : "");

  if (!j.contains("label")) bad("expected a \"label\", found none");
  read_labels(j["label"], schema.num_labels, options, out.labels);
  if (schema.sample_weights) {
    float w = 1.0f;  // a record without "weight" weighs 1
    if (j.contains("weight")) {
      const json& v = j["weight"];
      if (!v.is_number() || !std::isfinite(v.get<float>()) || v.get<float>() < 0)
        bad("expected \"weight\" to be a finite number >= 0 (the sample weight), found ", shown_json(v));
      w = v.get<float>();
    }
    out.sample_weights.push_back(w);
  }

  if (j.contains("dense"))
    read_numbers(j["dense"], schema.num_dense, "dense", out.dense);
  else if (schema.num_dense > 0)
    bad("expected \"dense\" with ", schema.num_dense, " numbers, found none");

  const json empty = json::object();
  const json& sparse = j.contains("sparse") ? j["sparse"] : empty;
  if (!sparse.is_object()) bad("expected \"sparse\" to be an object of features, found ", shown_json(sparse));
  if (options.strict)
    for (const auto& [key, _] : sparse.items())
      if (std::find(schema.sparse_features.begin(), schema.sparse_features.end(), key) == schema.sparse_features.end())
        bad("expected sparse features from ", join_names(schema.sparse_features), ", found \"", key,
            "\" (data.strict_features is on)");
  for (size_t f = 0; f < schema.sparse_features.size(); ++f) {
    const auto& name = schema.sparse_features[f];
    if (sparse.contains(name)) {
      const bool may_weigh = options.weighted.empty() || options.weighted[f];
      IdRules rules;
      rules.string_range = f < options.string_id_range.size() ? options.string_id_range[f] : 0;
      rules.seed = options.hash_seed;
      rules.limit = f < options.id_limit.size() ? options.id_limit[f] : 0;
      rules.vocab = f < options.vocab.size() ? options.vocab[f].get() : nullptr;
      rules.oov_buckets = f < options.oov_buckets.size() ? options.oov_buckets[f] : 1;
      read_bag(sparse[name], name, schema.weighted, may_weigh, rules, out.sparse[f]);
    }
    out.close_bag(f);
  }
  out.finish_row();
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

JsonlReader::JsonlReader(std::string path, DataSchema schema, BadRecordPolicy policy, JsonlOptions options)
    : lines_(path), schema_(std::move(schema)), policy_(policy), options_(std::move(options)) {}

JsonlReader::JsonlReader(std::string name, std::string_view text, DataSchema schema, BadRecordPolicy policy,
                         JsonlOptions options)
    : lines_(std::move(name), text), schema_(std::move(schema)), policy_(policy), options_(std::move(options)) {}

std::optional<ExampleColumns> JsonlReader::read(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "JsonlReader::read: expected max_rows > 0, got ", max_rows);
  ExampleColumns out(schema_);
  if (read_into(max_rows, out) == 0) return std::nullopt;
  return out;
}

int64_t JsonlReader::read_into(int64_t max_rows, ExampleColumns& out) {
  const int64_t start = out.num_rows();
  std::string_view line;
  while (out.num_rows() - start < max_rows && lines_.next(line)) {
    if (is_blank(line)) continue;
    const int64_t rows_before = out.num_rows();
    try {
      parse_record(line, schema_, options_, out);
    } catch (const RecordError& e) {
      out.truncate(rows_before);
      std::string message = str_cat(lines_.name(), ":", lines_.line_number(), ": ", e.message);
      if (policy_ == BadRecordPolicy::kFail) throw InputError(message);
      report_.skip(std::move(message));
    }
  }
  report_.rows_read += out.num_rows() - start;
  return out.num_rows() - start;
}

int64_t JsonlReader::skip(int64_t n) {
  int64_t passed = 0;
  std::string_view line;
  while (passed < n && lines_.next(line))
    if (!is_blank(line)) ++passed;  // as read: blank lines are not records
  return passed;
}

// ---------------------------------------------------------------- writer

namespace {
template <typename T>
void append_number(std::string& s, T x) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x);
  s.append(buf, end);
}

template <typename T>
void append_list(std::string& s, const T* begin, const T* end) {
  s += '[';
  for (const T* p = begin; p != end; ++p) {
    if (p != begin) s += ", ";
    append_number(s, *p);
  }
  s += ']';
}
}  // namespace

JsonlWriter::JsonlWriter(std::string path) : path_(std::move(path)) {
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw_input_error(path_, ": cannot create: ", std::strerror(errno));
}

JsonlWriter::~JsonlWriter() {
  if (file_) std::fclose(file_);
}

void JsonlWriter::write(const ExampleColumns& block) {
  TORCH_CHECK(file_, "JsonlWriter: write after close");
  const auto& schema = block.schema();
  const int64_t nl = schema.num_labels, nd = schema.num_dense;
  std::string line;
  for (int64_t r = 0; r < block.num_rows(); ++r) {
    line = "{\"label\": ";
    const float* labels = block.labels.data() + r * nl;
    if (nl == 1)
      append_number(line, labels[0]);
    else
      append_list(line, labels, labels + nl);
    if (schema.sample_weights) {
      line += ", \"weight\": ";
      append_number(line, block.sample_weights[r]);
    }
    line += ", \"dense\": ";
    const float* dense = block.dense.data() + r * nd;
    append_list(line, dense, dense + nd);
    line += ", \"sparse\": {";
    for (size_t f = 0; f < block.sparse.size(); ++f) {
      const auto& col = block.sparse[f];
      if (f) line += ", ";
      line += '"' + schema.sparse_features[f] + "\": ";
      const int64_t* ids = col.ids.data() + col.offsets[r];
      const int64_t* ids_end = col.ids.data() + col.offsets[r + 1];
      if (schema.weighted) {
        line += "{\"ids\": ";
        append_list(line, ids, ids_end);
        line += ", \"weights\": ";
        append_list(line, col.weights.data() + col.offsets[r], col.weights.data() + col.offsets[r + 1]);
        line += '}';
      } else {
        append_list(line, ids, ids_end);
      }
    }
    line += "}}\n";
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size())
      throw_input_error(path_, ": cannot write: ", std::strerror(errno));
  }
}

void JsonlWriter::close() {
  if (!file_) return;
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) throw_input_error(path_, ": cannot write: ", std::strerror(errno));
}

void write_jsonl(const std::string& path, const ExampleColumns& data) {
  JsonlWriter writer(path);
  writer.write(data);
  writer.close();
}

}  // namespace recmod::data
