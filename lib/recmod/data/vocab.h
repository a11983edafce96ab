#pragma once
// Vocabularies of string ids (`recmod vocab`, docs/data.md "Vocabularies"):
// per sparse column of a delimited file, the ids seen at least `min_count`
// times, at most `top_k` of them by count (ties by the id text, so the
// result is deterministic), numbered 0..n-1 in that order; every other text
// maps to the out-of-vocabulary bucket n.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "recmod/data/delimited.h"

namespace recmod::data {

/// One column's vocabulary: ids[i] is the text of id i.
struct ColumnVocab {
  std::string column;            // the column's name in data.columns
  std::vector<std::string> ids;  // kept texts, in id order
  std::vector<int64_t> counts;   // their counts in the data it was built from
  // Statistics of the build (not saved): distinct texts, values seen, and
  // values that fell in the OOV bucket.
  int64_t distinct = 0;
  int64_t total = 0;
  int64_t oov = 0;

  /// The id of `text`: its index, or oov_id() when not kept.
  int64_t lookup(std::string_view text) const;
  /// The row of `text` with `oov_buckets` (>= 1) out-of-vocabulary rows: its
  /// index, or n + hash_string_id(text, seed, oov_buckets) when not kept
  /// (n = ids.size(); one bucket: always n).
  int64_t id(std::string_view text, int64_t oov_buckets, uint64_t seed) const;
  /// The (first) out-of-vocabulary bucket: ids.size().
  int64_t oov_id() const { return static_cast<int64_t>(ids.size()); }
  /// Rows a table needs for this column: the kept ids and the OOV buckets.
  int64_t num_rows(int64_t oov_buckets = 1) const { return oov_id() + oov_buckets; }
  /// Builds the text -> id index (after ids changed).
  void index();

 private:
  std::unordered_map<std::string, int64_t> index_;
};

struct Vocabulary {
  std::vector<ColumnVocab> columns;
  /// The column named `name`, or nullptr.
  const ColumnVocab* find(std::string_view name) const;
};

struct VocabOptions {
  int64_t min_count = 1;  // keep texts seen at least this often (>= 1)
  int64_t top_k = 0;      // keep at most this many per column (0: no limit)
};

/// Counts the string ids of every sparse column (`ids: hash` or `ids: vocab`) of
/// `spec` (cells split by the column's separator, inline weights dropped,
/// empty cells read as the column's default) in the delimited file `path`,
/// and of its side tables' such columns in their files (relative to `path`'s
/// directory, as the reader finds them), and keeps them as `options` says.
/// Bad records (a wrong field count, an unterminated quote) are InputErrors
/// "<file>:<line>: ...".
Vocabulary build_vocabulary(const std::string& path, const DelimitedSpec& spec, const VocabOptions& options);
/// The same over `text` (`name` for messages; side tables relative to the
/// current directory).
Vocabulary build_vocabulary(const std::string& name, std::string_view text, const DelimitedSpec& spec,
                            const VocabOptions& options);

/// Writes the vocabulary file format (docs/data.md "Vocabularies"):
///   recmod-vocab 1
///   column<TAB><name><TAB><n>
///   <count><TAB><text>        (n lines, id 0 first)
///   ...                       (the next column)
/// A text holding a line break cannot be saved (InputError naming it).
void save_vocabulary(const Vocabulary& vocab, const std::string& path);
/// Reads that format strictly: anything else is an InputError "<path>:<line>: expected ..., found ...".
Vocabulary load_vocabulary(const std::string& path);
/// The same from `text` (`name` for messages).
Vocabulary parse_vocabulary(const std::string& name, std::string_view text);

/// Counts the string ids of the named `features` of a JSON lines file (the
/// lists under "sparse", or their "ids"; an integer id counts as its decimal
/// text, as a vocabulary feature reads it) and keeps them as `options` says;
/// each feature's vocabulary is named after it. Records that are not JSON
/// objects, or whose features are not lists of ids, are InputErrors
/// "<path>:<line>: ...".
Vocabulary build_jsonl_vocabulary(const std::string& path, const std::vector<std::string>& features,
                                  const VocabOptions& options);
/// The same over `text` (`name` for messages).
Vocabulary build_jsonl_vocabulary(const std::string& name, std::string_view text,
                                  const std::vector<std::string>& features, const VocabOptions& options);

}  // namespace recmod::data
