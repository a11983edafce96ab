#include "recmod/data/delimited.h"

#include <xxhash.h>

#include <charconv>
#include <cmath>
#include <cstring>

#include "recmod/common/errors.h"
#include "recmod/data/vocab.h"

namespace recmod::data {

int64_t hash_string_id(std::string_view text, uint64_t seed, uint64_t range) {
  TORCH_CHECK(range > 0 && range <= (UINT64_C(1) << 63), "hash_string_id: range must be in [1, 2^63], got ", range);
  return static_cast<int64_t>(XXH3_64bits_withSeed(text.data(), text.size(), seed) % range);
}

namespace {

/// A cell as it appears in a message: quoted, cut at 40 characters.
std::string cell_text(std::string_view field) {
  constexpr size_t kMax = 40;
  if (field.size() > kMax) return str_cat("'", field.substr(0, kMax), "...'");
  return str_cat("'", field, "'");
}

std::string delimiter_name(char c) {
  if (c == '\t') return "tab";
  if (c == ' ') return "space";
  return str_cat("'", std::string(1, c), "'");
}

template <typename... Args>
std::string column_error(const ColumnSpec& c, const Args&... args) {
  return str_cat("column '", c.name, "': ", args...);
}

bool parse_double(std::string_view s, double& x) {
  if (s.empty()) return false;
  const char* begin = s.data();
  if (*begin == '+') ++begin;  // from_chars refuses a leading '+'
  const auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), x);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(x);
}

bool parse_int(std::string_view s, int64_t& x) {
  if (s.empty()) return false;
  const char* begin = s.data();
  if (*begin == '+') ++begin;
  const auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), x);
  return ec == std::errc() && ptr == s.data() + s.size();
}

/// The cell's text, or its default when it is empty.
std::string_view with_default(const ColumnSpec& c, std::string_view cell) {
  if (cell.empty() && c.default_value) return *c.default_value;
  return cell;
}

/// Appends a sparse cell's ids (and weights, when `weights` is given: 1 or
/// the inline key:weight). An empty cell is an empty bag.
std::string read_sparse_cell(const ColumnSpec& c, std::string_view cell, uint64_t seed, std::vector<int64_t>& ids,
                             std::vector<float>* weights) {
  cell = with_default(c, cell);
  if (cell.empty()) return {};
  auto one = [&](std::string_view item) -> std::string {
    float w = 1.0f;
    if (c.weight_separator) {
      const auto pos = item.rfind(c.weight_separator);
      if (pos == std::string_view::npos)
        return column_error(c, "expected 'id", std::string(1, c.weight_separator), "weight' items, found ", cell_text(item));
      double x = 0;
      if (!parse_double(item.substr(pos + 1), x))
        return column_error(c, "expected a finite number as the weight in ", cell_text(item));
      w = static_cast<float>(x);
      item = item.substr(0, pos);
    }
    if (item.empty()) return column_error(c, "expected an id, found an empty value in ", cell_text(cell));
    int64_t id = 0;
    if (c.ids == IdKind::kHash) {
      id = hash_string_id(item, seed, c.range);
    } else if (c.ids == IdKind::kVocab) {
      id = c.vocab->id(item, c.oov_buckets, seed);
    } else if (!parse_int(item, id)) {
      return column_error(c, "expected an integer id (int64; or declare the column 'ids: hash'), found ", cell_text(item));
    }
    ids.push_back(id);
    if (weights) weights->push_back(w);
    return {};
  };
  if (!c.separator) return one(cell);
  size_t begin = 0;
  for (;;) {
    const auto end = cell.find(c.separator, begin);
    auto error = one(cell.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (!error.empty()) return error;
    if (end == std::string_view::npos) return {};
    begin = end + 1;
  }
}

/// A flag cell: 1 adds the column's id, 0 or empty nothing.
std::string read_flag_cell(const ColumnSpec& c, std::string_view cell, std::vector<int64_t>& ids,
                           std::vector<float>* weights) {
  cell = with_default(c, cell);
  if (cell.empty() || cell == "0") return {};
  if (cell != "1") return column_error(c, "expected a flag 0 or 1, found ", cell_text(cell));
  ids.push_back(c.flag_id);
  if (weights) weights->push_back(1.0f);
  return {};
}

/// Maps the spec's columns to a header's fields by name.
std::vector<int64_t> columns_by_name(const std::vector<ColumnSpec>& columns, const std::vector<std::string_view>& header,
                                     const std::string& where, const char* config_key) {
  std::vector<int64_t> out;
  for (const auto& c : columns) {
    if (c.source >= 0) {  // reads another column's cell
      out.push_back(out[static_cast<size_t>(c.source)]);
      continue;
    }
    int64_t found = -1;
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == c.name) {
        if (found >= 0) throw_input_error(where, ": the header names column '", c.name, "' twice");
        found = static_cast<int64_t>(i);
      }
    if (found < 0) {
      std::vector<std::string> names(header.begin(), header.end());
      throw_input_error(where, ": column '", c.name, "' of ", config_key, " is not in the header; the header has ",
                        join_names(names));
    }
    out.push_back(found);
  }
  return out;
}

}  // namespace

std::string split_record(std::string_view line, TextLines& lines, char delimiter, char quote,
                         std::vector<std::string_view>& fields, std::string& scratch) {
  fields.clear();
  if (!quote || std::memchr(line.data(), quote, line.size()) == nullptr) {
    // The common case: no quotes, fields are views into the line.
    const char* p = line.data();
    const char* end = p + line.size();
    for (;;) {
      const auto* d = static_cast<const char*>(std::memchr(p, delimiter, static_cast<size_t>(end - p)));
      fields.emplace_back(p, static_cast<size_t>((d ? d : end) - p));
      if (!d) return {};
      p = d + 1;
    }
  }
  // Quoted fields: unquoted text goes to `scratch`, fields are (offset, size)
  // into it until the record is complete.
  scratch.clear();
  std::vector<std::pair<size_t, size_t>> spans;
  size_t i = 0;
  size_t start = 0;
  bool in_quotes = false, was_quoted = false, after_quote = false;
  for (;;) {
    if (i == line.size()) {
      if (in_quotes) {
        // A line break inside a quoted field: the record goes on.
        if (!lines.next(line)) return "expected a closing quote, found the end of the file";
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        scratch += '\n';
        i = 0;
        continue;
      }
      spans.emplace_back(start, scratch.size() - start);
      break;
    }
    const char ch = line[i++];
    if (in_quotes) {
      if (ch == quote) {
        if (i < line.size() && line[i] == quote) {
          scratch += quote;
          ++i;
        } else {
          in_quotes = false;
          after_quote = true;
        }
      } else {
        scratch += ch;
      }
    } else if (ch == delimiter) {
      spans.emplace_back(start, scratch.size() - start);
      start = scratch.size();
      was_quoted = after_quote = false;
    } else if (after_quote) {
      return str_cat("expected ", delimiter_name(delimiter), " or the end of the line after the closing quote of field ",
                     spans.size() + 1, ", found '", std::string(1, ch), "'");
    } else if (ch == quote && scratch.size() == start && !was_quoted) {
      in_quotes = was_quoted = true;
    } else {
      scratch += ch;  // a quote inside an unquoted field is kept as it is
    }
  }
  for (const auto& [offset, size] : spans) fields.emplace_back(scratch.data() + offset, size);
  return {};
}

// ------------------------------------------------------------ side tables

struct DelimitedReader::SideTable {
  struct Id {
    int64_t feature;
    int64_t id;
    float weight;
  };
  struct Row {
    std::vector<Id> ids;
    std::vector<std::pair<int64_t, float>> dense;  // (dense index, value)
  };
  std::unordered_map<std::string, Row> rows;
  std::string file;
  // A key not in the table: each dense column's default (its `default:`),
  // or, when one has none, the index of that column (the row is bad).
  std::vector<std::pair<int64_t, float>> missing_dense;
  int64_t dense_without_default = -1;
};

namespace {

std::unique_ptr<DelimitedReader::SideTable> load_side_table(const SideTableSpec& spec, const std::string& dir,
                                                              uint64_t seed) {
  auto table = std::make_unique<DelimitedReader::SideTable>();
  table->file = spec.path.empty() || spec.path[0] == '/' || dir.empty() ? spec.path : dir + "/" + spec.path;
  TextLines lines(table->file);
  std::vector<std::string_view> fields;
  std::string scratch;
  std::vector<int64_t> field_of;
  if (!spec.header)
    for (size_t i = 0; i < spec.columns.size(); ++i) field_of.push_back(static_cast<int64_t>(i));
  std::string_view line;
  std::vector<int64_t> ids;
  std::vector<float> weights;
  while (lines.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const std::string where = str_cat(table->file, ":", lines.line_number());
    auto error = split_record(line, lines, spec.delimiter, spec.quote, fields, scratch);
    if (!error.empty()) throw_input_error(where, ": ", error);
    if (field_of.empty()) {
      field_of = columns_by_name(spec.columns, fields, where, ("side table '" + spec.name + "'").c_str());
      continue;
    }
    const size_t expected = spec.header ? 0 : spec.columns.size();
    if (expected && fields.size() != expected)
      throw_input_error(where, ": expected ", expected, " fields separated by ", delimiter_name(spec.delimiter),
                        " (side table '", spec.name, "' lists ", expected, " columns), found ", fields.size());
    DelimitedReader::SideTable::Row row;
    for (size_t i = 0; i < spec.columns.size(); ++i) {
      const auto& c = spec.columns[i];
      if (static_cast<size_t>(field_of[i]) >= fields.size())
        throw_input_error(where, ": column '", c.name, "': expected a value, found only ", fields.size(), " fields");
      const std::string_view cell = fields[field_of[i]];
      if (c.role == ColumnRole::kDense) {
        const std::string_view text = with_default(c, cell);
        double x = 0;
        if (!parse_double(text, x))
          throw_input_error(where, ": column '", c.name, "' of side table '", spec.name, "': expected a finite number",
                            text.empty() ? " (the cell is empty; give the column a 'default:')" : "", ", found ",
                            cell_text(text));
        row.dense.emplace_back(c.target, static_cast<float>(c.log1p ? std::log1p(std::max(x, 0.0)) : x));
        continue;
      }
      ids.clear();
      weights.clear();
      if (c.role == ColumnRole::kSparse)
        error = read_sparse_cell(c, cell, seed, ids, &weights);
      else if (c.role == ColumnRole::kFlag)
        error = read_flag_cell(c, cell, ids, &weights);
      if (!error.empty()) throw_input_error(where, ": ", error);
      for (size_t k = 0; k < ids.size(); ++k) row.ids.push_back({c.target, ids[k], weights[k]});
    }
    std::string key(fields[field_of[spec.key_column]]);
    if (!table->rows.emplace(key, std::move(row)).second)
      throw_input_error(where, ": key ", cell_text(key), " of side table '", spec.name, "' is in the file twice");
  }
  for (size_t i = 0; i < spec.columns.size(); ++i) {
    const auto& c = spec.columns[i];
    if (c.role != ColumnRole::kDense) continue;
    double x = 0;
    if (c.default_value && parse_double(*c.default_value, x))
      table->missing_dense.emplace_back(c.target, static_cast<float>(c.log1p ? std::log1p(std::max(x, 0.0)) : x));
    else if (table->dense_without_default < 0)
      table->dense_without_default = static_cast<int64_t>(i);
  }
  return table;
}

}  // namespace

// ------------------------------------------------------------ the reader

DelimitedReader::DelimitedReader(std::string path, std::shared_ptr<const DelimitedSpec> spec, BadRecordPolicy policy)
    : lines_(path), spec_(std::move(spec)), policy_(policy) {
  const auto slash = path.rfind('/');
  start(slash == std::string::npos ? std::string() : path.substr(0, slash));
}

DelimitedReader::DelimitedReader(std::string name, std::string_view text, std::shared_ptr<const DelimitedSpec> spec,
                                 BadRecordPolicy policy)
    : lines_(std::move(name), text), spec_(std::move(spec)), policy_(policy) {
  start("");
}

DelimitedReader::~DelimitedReader() = default;

void DelimitedReader::start(const std::string& dir) {
  TORCH_CHECK(spec_, "DelimitedReader: no column spec");
  auto check_vocab = [](const ColumnSpec& c) {
    if (c.ids == IdKind::kVocab && !c.vocab)
      throw_input_error(c.vocab_path, ": no such vocabulary file (column '", c.name,
                        "' has 'ids: vocab'); build it with recmod vocab CONFIG --data FILE --out ", c.vocab_path);
  };
  for (const auto& c : spec_->columns) check_vocab(c);
  for (const auto& t : spec_->side_tables)
    for (const auto& c : t.columns) check_vocab(c);
  for (const auto& t : spec_->side_tables) side_.push_back(load_side_table(t, dir, spec_->hash_seed));
  if (!spec_->header) {
    int64_t position = 0;
    for (const auto& c : spec_->columns)
      field_of_column_.push_back(c.source >= 0 ? field_of_column_[static_cast<size_t>(c.source)] : position++);
    num_fields_ = position;
    header_read_ = true;
  }
  bag_range_.resize(spec_->columns.size());
}

std::string DelimitedReader::parse_row(const std::vector<std::string_view>& fields, ExampleColumns& out) {
  const auto& spec = *spec_;
  const auto& schema = spec.schema;
  if (static_cast<int64_t>(fields.size()) != num_fields_) {
    std::string message = str_cat("expected ", num_fields_, " fields separated by ", delimiter_name(spec.delimiter), " (",
                                  spec.header ? "as the header has" : "as data.columns lists", "), found ", fields.size());
    if (fields.size() == 1 && report_.rows_read == 0 && out.empty())
      message += "; is data.delimiter right for this file?";
    return message;
  }
  const bool weighted = schema.weighted;
  const size_t label_base = out.labels.size(), dense_base = out.dense.size();
  out.labels.resize(label_base + schema.num_labels, 0.0f);
  out.dense.resize(dense_base + schema.num_dense, 0.0f);
  std::string error;
  for (size_t i = 0; i < spec.columns.size(); ++i) {
    const auto& c = spec.columns[i];
    const std::string_view cell = fields[field_of_column_[i]];
    switch (c.role) {
      case ColumnRole::kLabel: {
        const std::string_view text = with_default(c, cell);
        double x = 0;
        if (!parse_double(text, x)) return column_error(c, "expected a number as the label, found ", cell_text(text));
        if (c.threshold) {
          x = x >= *c.threshold ? 1.0 : 0.0;
        } else if (c.binary && x != 0.0 && x != 1.0) {
          return column_error(c, "expected label 0 or 1 (the loss is binary cross-entropy; give the column a "
                                 "'threshold: T' for label = value >= T), found ", cell_text(text));
        }
        out.labels[label_base + c.target] = static_cast<float>(x);
        break;
      }
      case ColumnRole::kSampleWeight: {
        const std::string_view text = with_default(c, cell);
        double x = 0;
        if (!parse_double(text, x) || !std::isfinite(x) || x < 0)
          return column_error(c, "expected a sample weight (a finite number >= 0)",
                              text.empty() ? " (the cell is empty; give the column a 'default:')" : "", ", found ",
                              cell_text(text));
        out.sample_weights.push_back(static_cast<float>(x));
        break;
      }
      case ColumnRole::kDense: {
        const std::string_view text = with_default(c, cell);
        double x = 0;
        if (!parse_double(text, x))
          return column_error(c, "expected a finite number", text.empty() ? " (the cell is empty; give the column a 'default:')" : "",
                              ", found ", cell_text(text));
        out.dense[dense_base + c.target] = static_cast<float>(c.log1p ? std::log1p(std::max(x, 0.0)) : x);
        break;
      }
      case ColumnRole::kSparse:
      case ColumnRole::kFlag: {
        auto& col = out.sparse[c.target];
        const auto begin = static_cast<int64_t>(col.ids.size());
        if (c.mask >= 0) {  // padding: the mask says whether the cell is an id
          const auto& m = spec.columns[static_cast<size_t>(c.mask)];
          const std::string_view flag = fields[field_of_column_[static_cast<size_t>(c.mask)]];
          double x = 0;
          if (!parse_double(flag, x) || (x != 0.0 && x != 1.0))
            return column_error(m, "expected a mask of 0 or 1 (for column '", c.name, "'), found ", cell_text(flag));
          if (x == 0.0) {
            bag_range_[i] = {begin, begin};
            break;
          }
        }
        error = c.role == ColumnRole::kSparse ? read_sparse_cell(c, cell, spec.hash_seed, col.ids, weighted ? &col.weights : nullptr)
                                              : read_flag_cell(c, cell, col.ids, weighted ? &col.weights : nullptr);
        if (!error.empty()) return error;
        bag_range_[i] = {begin, static_cast<int64_t>(col.ids.size())};
        break;
      }
      case ColumnRole::kWeight:
      case ColumnRole::kIgnore:
        break;
    }
  }
  // Joins: a side table's ids for this row's key.
  for (size_t i = 0; i < spec.columns.size(); ++i) {
    const auto& c = spec.columns[i];
    if (c.join.empty()) continue;
    size_t t = 0;
    while (spec.side_tables[t].name != c.join) ++t;
    const std::string key(with_default(c, fields[field_of_column_[i]]));
    const auto& side = *side_[t];
    const auto it = side.rows.find(key);
    if (it == side.rows.end()) {
      if (spec.side_tables[t].missing_is_bad)
        return column_error(c, "key ", cell_text(key), " is not in side table '", c.join, "' (", side.file, ")");
      if (side.dense_without_default >= 0)
        return column_error(c, "key ", cell_text(key), " is not in side table '", c.join, "' (", side.file,
                            ") and its dense column '",
                            spec.side_tables[t].columns[static_cast<size_t>(side.dense_without_default)].name,
                            "' has no 'default:' for a missing key");
      for (const auto& [index, value] : side.missing_dense) out.dense[dense_base + index] = value;
      continue;
    }
    for (const auto& [index, value] : it->second.dense) out.dense[dense_base + index] = value;
    for (const auto& id : it->second.ids) {
      out.sparse[id.feature].ids.push_back(id.id);
      if (weighted) out.sparse[id.feature].weights.push_back(id.weight);
    }
  }
  // Weight columns, after the ids they weigh.
  for (size_t i = 0; i < spec.columns.size(); ++i) {
    const auto& c = spec.columns[i];
    if (c.role != ColumnRole::kWeight) continue;
    const auto& of = spec.columns[c.weight_of];
    const auto [begin, end] = bag_range_[c.weight_of];
    std::string_view cell = with_default(c, fields[field_of_column_[i]]);
    std::vector<float> values;
    if (!cell.empty()) {
      size_t pos = 0;
      for (;;) {
        const auto sep = of.separator ? cell.find(of.separator, pos) : std::string_view::npos;
        const auto item = cell.substr(pos, sep == std::string_view::npos ? std::string_view::npos : sep - pos);
        double x = 0;
        if (!parse_double(item, x)) return column_error(c, "expected a finite number as a weight, found ", cell_text(item));
        values.push_back(static_cast<float>(x));
        if (sep == std::string_view::npos) break;
        pos = sep + 1;
      }
    }
    if (static_cast<int64_t>(values.size()) != end - begin)
      return column_error(c, "expected ", end - begin, " weight(s), one per id of column '", of.name, "', found ",
                          values.size(), " in ", cell_text(cell));
    auto& weights = out.sparse[of.target].weights;
    std::copy(values.begin(), values.end(), weights.begin() + begin);
  }
  for (size_t f = 0; f < out.sparse.size(); ++f) out.close_bag(f);
  out.finish_row();
  return {};
}

std::optional<ExampleColumns> DelimitedReader::read(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "DelimitedReader::read: expected max_rows > 0, got ", max_rows);
  ExampleColumns out(spec_->schema);
  out.reserve(max_rows);
  if (read_into(max_rows, out) == 0) return std::nullopt;
  return out;
}

int64_t DelimitedReader::read_into(int64_t max_rows, ExampleColumns& out) {
  const int64_t start = out.num_rows();
  std::string_view line;
  while (out.num_rows() - start < max_rows && lines_.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF files
    if (line.empty()) continue;                                     // blank lines are not records
    const int64_t line_number = lines_.line_number();
    std::string error = split_record(line, lines_, spec_->delimiter, spec_->quote, fields_, scratch_);
    if (error.empty() && !header_read_) {
      field_of_column_ = columns_by_name(spec_->columns, fields_, str_cat(lines_.name(), ":", line_number), "data.columns");
      num_fields_ = static_cast<int64_t>(fields_.size());
      header_read_ = true;
      continue;
    }
    const int64_t rows_before = out.num_rows();
    if (error.empty()) error = parse_row(fields_, out);
    if (error.empty()) continue;
    out.truncate(rows_before);
    std::string message = str_cat(lines_.name(), ":", line_number, ": ", error);
    if (policy_ == BadRecordPolicy::kFail) throw InputError(message);
    report_.skip(std::move(message));
  }
  report_.rows_read += out.num_rows() - start;
  return out.num_rows() - start;
}

int64_t DelimitedReader::skip(int64_t n) {
  const char quote = spec_->quote;
  int64_t passed = 0;
  std::string_view line;
  while (passed < n && lines_.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;  // as read: blank lines are not records
    const bool quoted = quote && std::memchr(line.data(), quote, line.size()) != nullptr;
    if (!header_read_ || quoted) {
      const int64_t line_number = lines_.line_number();
      const std::string error = split_record(line, lines_, spec_->delimiter, quote, fields_, scratch_);
      if (error.empty() && !header_read_) {
        field_of_column_ = columns_by_name(spec_->columns, fields_, str_cat(lines_.name(), ":", line_number), "data.columns");
        num_fields_ = static_cast<int64_t>(fields_.size());
        header_read_ = true;
        continue;
      }
    }
    ++passed;
  }
  return passed;
}

}  // namespace recmod::data
