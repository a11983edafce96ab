#include "recmod/data/vocab.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <memory>
#include <unordered_set>

#include "recmod/common/errors.h"
#include "recmod/data/text_lines.h"

namespace recmod::data {

namespace {

// "'text'" for messages, cut at 40 characters.
std::string shown_text(std::string_view text) {
  if (text.size() > 40) return "'" + std::string(text.substr(0, 40)) + "...'";
  return "'" + std::string(text) + "'";
}

bool parse_count(std::string_view text, int64_t& out) {
  if (text.empty() || text[0] == '-' || text[0] == '+') return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// The columns whose string ids are counted: sparse with string ids (hashed or
// looked up in a vocabulary).
std::vector<size_t> vocab_columns(const std::vector<ColumnSpec>& columns) {
  std::vector<size_t> out;
  for (size_t i = 0; i < columns.size(); ++i) {
    const auto& c = columns[i];
    if (c.role == ColumnRole::kSparse && (c.ids == IdKind::kHash || c.ids == IdKind::kVocab) && c.source < 0)
      out.push_back(i);
  }
  return out;
}

// Adds a cell's texts to `counts` (as the reader splits them).
void count_cell(const ColumnSpec& c, std::string_view cell, std::unordered_map<std::string, int64_t>& counts,
                int64_t& total) {
  if (cell.empty() && c.default_value) cell = *c.default_value;
  if (cell.empty()) return;
  auto one = [&](std::string_view item) {
    if (c.weight_separator) {
      const auto pos = item.rfind(c.weight_separator);
      if (pos != std::string_view::npos) item = item.substr(0, pos);
    }
    if (item.empty()) return;
    ++counts[std::string(item)];
    ++total;
  };
  if (!c.separator) return one(cell);
  size_t begin = 0;
  for (;;) {
    const auto end = cell.find(c.separator, begin);
    one(cell.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (end == std::string_view::npos) return;
    begin = end + 1;
  }
}

void check_options(const VocabOptions& options) {
  if (options.min_count < 1) throw_input_error("vocab: expected min_count >= 1, found ", options.min_count);
  if (options.top_k < 0) throw_input_error("vocab: expected top_k >= 0 (0: no limit), found ", options.top_k);
}

// Each column's texts with count >= min_count, at most top_k, most frequent
// first (ties by the text).
Vocabulary keep(const std::vector<std::string>& names, std::vector<std::unordered_map<std::string, int64_t>>& counts,
                const std::vector<int64_t>& totals, const VocabOptions& options) {
  Vocabulary out;
  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<std::pair<std::string, int64_t>> kept;
    for (auto& [text, n] : counts[k])
      if (n >= options.min_count) kept.emplace_back(text, n);
    std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (options.top_k > 0 && static_cast<int64_t>(kept.size()) > options.top_k)
      kept.resize(static_cast<size_t>(options.top_k));
    ColumnVocab v;
    v.column = names[k];
    v.distinct = static_cast<int64_t>(counts[k].size());
    v.total = totals[k];
    int64_t in_vocab = 0;
    for (auto& [text, n] : kept) {
      v.ids.push_back(text);
      v.counts.push_back(n);
      in_vocab += n;
    }
    v.oov = v.total - in_vocab;
    v.index();
    out.columns.push_back(std::move(v));
  }
  return out;
}

// Counts the columns `counted` (indices into `columns`) of one delimited
// file into counts[base + k] / totals[base + k]; `what` names the column
// list in messages ("data.columns", "side table 'users'").
void count_file(TextLines& lines, const std::vector<ColumnSpec>& columns, bool header, char delimiter, char quote,
                const std::vector<size_t>& counted, const std::string& what,
                std::vector<std::unordered_map<std::string, int64_t>>& counts, std::vector<int64_t>& totals,
                size_t base) {
  std::vector<int64_t> field_of;  // per column: its field in a record
  size_t num_fields = 0;
  if (!header) {
    int64_t position = 0;
    for (const auto& c : columns)
      field_of.push_back(c.source >= 0 ? field_of[static_cast<size_t>(c.source)] : position++);
    num_fields = static_cast<size_t>(position);
  }
  std::vector<std::string_view> fields;
  std::string scratch;
  std::string_view line;
  while (lines.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const int64_t line_number = lines.line_number();
    const std::string where = str_cat(lines.name(), ":", line_number);
    const std::string error = split_record(line, lines, delimiter, quote, fields, scratch);
    if (!error.empty()) throw_input_error(where, ": ", error);
    if (field_of.empty()) {  // the header
      for (const auto& c : columns) {
        if (c.source >= 0) {
          field_of.push_back(field_of[static_cast<size_t>(c.source)]);
          continue;
        }
        int64_t found = -1;
        for (size_t i = 0; i < fields.size(); ++i)
          if (fields[i] == c.name) found = static_cast<int64_t>(i);
        if (found < 0) {
          std::vector<std::string> names(fields.begin(), fields.end());
          throw_input_error(where, ": column '", c.name, "' of ", what, " is not in the header; the header has ",
                            join_names(names));
        }
        field_of.push_back(found);
      }
      num_fields = fields.size();
      continue;
    }
    if (fields.size() != num_fields)
      throw_input_error(where, ": expected ", num_fields, " fields (",
                        header ? "as the header has" : str_cat("as ", what, " lists"), "), found ", fields.size());
    for (size_t k = 0; k < counted.size(); ++k) {
      const size_t i = counted[k];
      count_cell(columns[i], fields[static_cast<size_t>(field_of[i])], counts[base + k], totals[base + k]);
    }
  }
}

// The data file's string-id columns, then each side table's (read from its
// file: relative to `dir`, as the reader finds it).
Vocabulary build(TextLines& lines, const DelimitedSpec& spec, const std::string& dir, const VocabOptions& options) {
  check_options(options);
  const auto counted = vocab_columns(spec.columns);
  std::vector<std::vector<size_t>> side_counted;
  std::vector<std::string> names;
  for (const size_t i : counted) names.push_back(spec.columns[i].name);
  for (const auto& t : spec.side_tables) {
    side_counted.push_back(vocab_columns(t.columns));
    for (const size_t i : side_counted.back()) {
      const std::string& name = t.columns[i].name;
      if (std::find(names.begin(), names.end(), name) != names.end())
        throw_input_error("vocab: column '", name, "' of side table '", t.name,
                          "' has the name of another string-id column; a vocabulary file names each column once "
                          "(rename one of them)");
      names.push_back(name);
    }
  }
  if (names.empty())
    throw_input_error(
        "vocab: data.columns (and its side tables) has no sparse column with string ids ('ids: hash' or 'ids: "
        "vocab'); nothing to count");
  std::vector<std::unordered_map<std::string, int64_t>> counts(names.size());
  std::vector<int64_t> totals(names.size(), 0);
  count_file(lines, spec.columns, spec.header, spec.delimiter, spec.quote, counted, "data.columns", counts, totals, 0);
  size_t base = counted.size();
  for (size_t t = 0; t < spec.side_tables.size(); ++t) {
    const auto& table = spec.side_tables[t];
    if (side_counted[t].empty()) continue;
    const std::string file =
        table.path.empty() || table.path[0] == '/' || dir.empty() ? table.path : dir + "/" + table.path;
    TextLines side(file);
    count_file(side, table.columns, table.header, table.delimiter, table.quote, side_counted[t],
               "side table '" + table.name + "'", counts, totals, base);
    base += side_counted[t].size();
  }
  return keep(names, counts, totals, options);
}

Vocabulary build_jsonl(TextLines& lines, const std::vector<std::string>& features, const VocabOptions& options) {
  check_options(options);
  if (features.empty()) throw_input_error("vocab: no feature to count");
  std::vector<std::unordered_map<std::string, int64_t>> counts(features.size());
  std::vector<int64_t> totals(features.size(), 0);
  std::string_view line;
  while (lines.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = str_cat(lines.name(), ":", lines.line_number());
    const nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) throw_input_error(where, ": expected a JSON object");
    const auto sparse = j.find("sparse");
    if (sparse == j.end()) continue;
    if (!sparse->is_object()) throw_input_error(where, ": expected \"sparse\" to be an object of features");
    for (size_t k = 0; k < features.size(); ++k) {
      const auto f = sparse->find(features[k]);
      if (f == sparse->end()) continue;
      const nlohmann::json* ids = &*f;
      if (f->is_object()) {
        const auto inner = f->find("ids");
        if (inner == f->end()) throw_input_error(where, ": expected \"ids\" in \"", features[k], "\"");
        ids = &*inner;
      }
      if (!ids->is_array()) throw_input_error(where, ": expected the ids of \"", features[k], "\" to be a list");
      for (const auto& x : *ids) {
        if (x.is_string()) {
          ++counts[k][x.get<std::string>()];
        } else if (x.is_number_integer()) {
          ++counts[k][x.is_number_unsigned() ? std::to_string(x.get<uint64_t>()) : std::to_string(x.get<int64_t>())];
        } else {
          throw_input_error(where, ": expected string or integer ids for \"", features[k], "\", found ",
                            shown_text(x.dump()));
        }
        ++totals[k];
      }
    }
  }
  return keep(features, counts, totals, options);
}

}  // namespace

int64_t ColumnVocab::lookup(std::string_view text) const {
  const auto it = index_.find(std::string(text));
  return it == index_.end() ? oov_id() : it->second;
}

int64_t ColumnVocab::id(std::string_view text, int64_t oov_buckets, uint64_t seed) const {
  const auto it = index_.find(std::string(text));
  if (it != index_.end()) return it->second;
  if (oov_buckets <= 1) return oov_id();
  return oov_id() + hash_string_id(text, seed, static_cast<uint64_t>(oov_buckets));
}

void ColumnVocab::index() {
  index_.clear();
  index_.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) index_.emplace(ids[i], static_cast<int64_t>(i));
}

const ColumnVocab* Vocabulary::find(std::string_view name) const {
  for (const auto& c : columns)
    if (c.column == name) return &c;
  return nullptr;
}

Vocabulary build_vocabulary(const std::string& path, const DelimitedSpec& spec, const VocabOptions& options) {
  TextLines lines(path);
  const auto slash = path.rfind('/');
  return build(lines, spec, slash == std::string::npos ? std::string() : path.substr(0, slash), options);
}

Vocabulary build_vocabulary(const std::string& name, std::string_view text, const DelimitedSpec& spec,
                            const VocabOptions& options) {
  TextLines lines(name, text);
  return build(lines, spec, "", options);
}

Vocabulary build_jsonl_vocabulary(const std::string& path, const std::vector<std::string>& features,
                                  const VocabOptions& options) {
  TextLines lines(path);
  return build_jsonl(lines, features, options);
}

Vocabulary build_jsonl_vocabulary(const std::string& name, std::string_view text,
                                  const std::vector<std::string>& features, const VocabOptions& options) {
  TextLines lines(name, text);
  return build_jsonl(lines, features, options);
}

void save_vocabulary(const Vocabulary& vocab, const std::string& path) {
  std::string text = "recmod-vocab 1\n";
  for (const auto& c : vocab.columns) {
    if (c.column.find_first_of("\t\r\n") != std::string::npos)
      throw_input_error(path, ": cannot save column name ", shown_text(c.column), ": it holds a tab or a line break");
    text += str_cat("column\t", c.column, "\t", c.ids.size(), "\n");
    for (size_t i = 0; i < c.ids.size(); ++i) {
      if (c.ids[i].find_first_of("\r\n") != std::string::npos)
        throw_input_error(path, ": cannot save id ", shown_text(c.ids[i]), " of column '", c.column,
                          "': it holds a line break");
      text += str_cat(i < c.counts.size() ? c.counts[i] : 0, "\t", c.ids[i], "\n");
    }
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw_input_error(path, ": cannot open for writing");
  out << text;
  out.close();
  if (!out) throw_input_error(path, ": write failed");
}

Vocabulary load_vocabulary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error(path, ": cannot open the vocabulary file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_vocabulary(path, text);
}

Vocabulary parse_vocabulary(const std::string& name, std::string_view text) {
  Vocabulary out;
  int64_t line_number = 0;
  size_t pos = 0;
  auto next = [&](std::string_view& line) {
    if (pos >= text.size()) return false;
    const auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos)
      throw_input_error(name, ":", line_number + 1, ": expected a line ending in a line break, found end of file");
    line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_number;
    return true;
  };
  std::string_view line;
  if (!next(line) || line != "recmod-vocab 1")
    throw_input_error(name, ":1: expected 'recmod-vocab 1' (a vocabulary written by recmod vocab), found ",
                      line_number ? shown_text(line) : "an empty file");
  int64_t left = 0;                      // ids still expected for the current column
  std::unordered_set<std::string> seen;  // the current column's ids
  while (next(line)) {
    if (left > 0) {
      const auto tab = line.find('\t');
      int64_t count = 0;
      if (tab == std::string_view::npos || !parse_count(line.substr(0, tab), count))
        throw_input_error(name, ":", line_number, ": expected '<count><TAB><id>' (", left, " more id(s) of column '",
                          out.columns.back().column, "'), found ", shown_text(line));
      auto& c = out.columns.back();
      std::string id(line.substr(tab + 1));
      if (!seen.insert(id).second)
        throw_input_error(name, ":", line_number, ": id ", shown_text(id), " of column '", c.column, "' appears twice");
      c.ids.push_back(std::move(id));
      c.counts.push_back(count);
      --left;
      continue;
    }
    const auto t1 = line.find('\t');
    const auto t2 = t1 == std::string_view::npos ? t1 : line.find('\t', t1 + 1);
    int64_t n = 0;
    if (line.substr(0, t1) != "column" || t2 == std::string_view::npos || t2 == t1 + 1 ||
        !parse_count(line.substr(t2 + 1), n))
      throw_input_error(name, ":", line_number, ": expected 'column<TAB><name><TAB><number of ids>', found ",
                        shown_text(line));
    const std::string column(line.substr(t1 + 1, t2 - t1 - 1));
    if (out.find(column)) throw_input_error(name, ":", line_number, ": column '", column, "' appears twice");
    if (!out.columns.empty()) out.columns.back().index();
    seen.clear();
    ColumnVocab c;
    c.column = column;
    out.columns.push_back(std::move(c));
    left = n;
  }
  if (left > 0)
    throw_input_error(name, ":", line_number + 1, ": expected ", left, " more id(s) of column '",
                      out.columns.back().column, "', found end of file");
  if (out.columns.empty()) throw_input_error(name, ":2: expected a 'column' line, found end of file");
  out.columns.back().index();
  return out;
}

}  // namespace recmod::data
