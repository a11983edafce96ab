#include "recmod/data/binary_format.h"

#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <limits>

#include "recmod/common/errors.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the binary data format is little-endian; this reader maps it without byte swapping");

namespace recmod::data {

namespace {

constexpr uint64_t kBlockAlign = 64;
constexpr uint32_t kFlagWeighted = 1;

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Copies `count` elements. memcpy may not be given a null pointer even for
// zero bytes, and an empty tensor's data_ptr is null (a batch whose bags are
// all empty, or a schema without dense features), so zero copies nothing.
template <typename T>
void copy_elements(T* dst, const T* src, uint64_t count) {
  if (count > 0) std::memcpy(dst, src, count * sizeof(T));
}

// The fixed 64-byte header, exactly as on disk (all fields naturally aligned).
struct Header {
  char magic[8];
  uint32_t version;
  uint32_t flags;
  uint64_t num_rows;
  uint32_t num_labels;
  uint32_t num_dense;
  uint32_t num_sparse;
  uint32_t names_size;
  uint64_t labels_offset;
  uint64_t dense_offset;
  uint64_t file_size;
};
static_assert(sizeof(Header) == kBinaryHeaderSize, "Header must be 64 bytes");

void write_all(std::FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes > 0 && std::fwrite(data, 1, bytes, f) != bytes)
    throw_input_error(path, ": cannot write: ", std::strerror(errno));
}

template <typename T>
void write_vector(std::FILE* f, const std::vector<T>& v, const std::string& path) {
  write_all(f, v.data(), v.size() * sizeof(T), path);
}

void pad_to(std::FILE* f, uint64_t& pos, uint64_t target, const std::string& path) {
  static const char zeros[kBlockAlign] = {};
  while (pos < target) {
    const auto n = std::min<uint64_t>(target - pos, kBlockAlign);
    write_all(f, zeros, n, path);
    pos += n;
  }
}

uint64_t file_bytes(std::FILE* f) {
  std::fflush(f);
  const long end = std::ftell(f);
  return end < 0 ? 0 : static_cast<uint64_t>(end);
}

void copy_file_into(std::FILE* src, std::FILE* dst, const std::string& path) {
  std::fflush(src);
  std::rewind(src);
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), src)) > 0) write_all(dst, buf.data(), n, path);
  if (std::ferror(src)) throw_input_error(path, ": cannot read back a temporary column file");
}

}  // namespace

// ---------------------------------------------------------------- writer

BinaryWriter::BinaryWriter(std::string path, DataSchema schema) : path_(std::move(path)), schema_(std::move(schema)) {
  const size_t per_feature = schema_.weighted ? 3 : 2;
  columns_.resize(2 + per_feature * schema_.sparse_features.size());
  num_ids_.assign(schema_.sparse_features.size(), 0);
  for (size_t i = 0; i < columns_.size(); ++i) {
    columns_[i].path = str_cat(path_, ".col", i, ".tmp");
    columns_[i].file = std::fopen(columns_[i].path.c_str(), "w+b");
    if (!columns_[i].file) {
      const std::string reason = std::strerror(errno);
      discard();
      throw_input_error(columns_[i].path, ": cannot create: ", reason);
    }
  }
}

BinaryWriter::~BinaryWriter() { discard(); }

void BinaryWriter::discard() {
  for (auto& c : columns_) {
    if (c.file) std::fclose(c.file);
    c.file = nullptr;
    if (!c.path.empty()) std::remove(c.path.c_str());
  }
}

void BinaryWriter::write(const ExampleColumns& block) {
  TORCH_CHECK(!closed_, "BinaryWriter: write after close");
  const auto& s = block.schema();
  if (s.sample_weights)
    throw_input_error(path_, ": the data has sample weights, which the .rmb format does not hold; train on the "
                      "text file (or write JSON lines, which keep them as \"weight\")");
  if (s.num_dense != schema_.num_dense || s.num_labels != schema_.num_labels ||
      s.sparse_features != schema_.sparse_features || s.weighted != schema_.weighted)
    throw_input_error(path_, ": block schema (features ", join_names(s.sparse_features), ", ", s.num_dense,
                      " dense) differs from the file's (features ", join_names(schema_.sparse_features), ", ",
                      schema_.num_dense, " dense)");
  write_vector(column(0), block.labels, path_);
  write_vector(column(1), block.dense, path_);
  const size_t per_feature = schema_.weighted ? 3 : 2;
  std::vector<int32_t> lengths(block.num_rows());
  for (size_t f = 0; f < block.sparse.size(); ++f) {
    const auto& col = block.sparse[f];
    for (int64_t r = 0; r < block.num_rows(); ++r) {
      const int64_t len = col.length(r);
      if (len > std::numeric_limits<int32_t>::max())
        throw_input_error(path_, ": feature ", schema_.sparse_features[f], " has a bag of ", len,
                          " ids, more than the format's int32 lengths hold");
      lengths[r] = static_cast<int32_t>(len);
    }
    write_vector(column(2 + per_feature * f), lengths, path_);
    write_vector(column(3 + per_feature * f), col.ids, path_);
    if (schema_.weighted) write_vector(column(4 + per_feature * f), col.weights, path_);
    num_ids_[f] += col.ids.size();
  }
  num_rows_ += block.num_rows();
}

void BinaryWriter::close() {
  TORCH_CHECK(!closed_, "BinaryWriter: closed twice");
  const size_t num_sparse = schema_.sparse_features.size();
  const size_t per_feature = schema_.weighted ? 3 : 2;

  std::string names;
  for (const auto& name : schema_.sparse_features) names += name + '\0';
  const uint64_t table_offset = align_up(kBinaryHeaderSize + names.size(), 8);
  uint64_t pos = table_offset + 32 * num_sparse;

  // Each column's block offset, in file order.
  std::vector<uint64_t> offsets(columns_.size());
  for (size_t i = 0; i < columns_.size(); ++i) {
    pos = align_up(pos, kBlockAlign);
    offsets[i] = pos;
    pos += file_bytes(columns_[i].file);
  }

  Header h{};
  std::memcpy(h.magic, kBinaryMagic, sizeof(h.magic));
  h.version = kBinaryVersion;
  h.flags = schema_.weighted ? kFlagWeighted : 0;
  h.num_rows = static_cast<uint64_t>(num_rows_);
  h.num_labels = static_cast<uint32_t>(schema_.num_labels);
  h.num_dense = static_cast<uint32_t>(schema_.num_dense);
  h.num_sparse = static_cast<uint32_t>(num_sparse);
  h.names_size = static_cast<uint32_t>(names.size());
  h.labels_offset = offsets[0];
  h.dense_offset = offsets[1];
  h.file_size = pos;

  const std::string partial = path_ + ".partial";
  std::FILE* out = std::fopen(partial.c_str(), "wb");
  if (!out) throw_input_error(partial, ": cannot create: ", std::strerror(errno));
  try {
    uint64_t at = 0;
    write_all(out, &h, sizeof(h), partial);
    write_all(out, names.data(), names.size(), partial);
    at = kBinaryHeaderSize + names.size();
    pad_to(out, at, table_offset, partial);
    for (size_t f = 0; f < num_sparse; ++f) {
      const uint64_t entry[4] = {num_ids_[f], offsets[2 + per_feature * f], offsets[3 + per_feature * f],
                                 schema_.weighted ? offsets[4 + per_feature * f] : 0};
      write_all(out, entry, sizeof(entry), partial);
      at += sizeof(entry);
    }
    for (size_t i = 0; i < columns_.size(); ++i) {
      pad_to(out, at, offsets[i], partial);
      copy_file_into(columns_[i].file, out, partial);
      at += file_bytes(columns_[i].file);
    }
    if (std::fclose(out) != 0) {
      out = nullptr;
      throw_input_error(partial, ": cannot write: ", std::strerror(errno));
    }
    out = nullptr;
  } catch (...) {
    if (out) std::fclose(out);
    std::remove(partial.c_str());
    throw;
  }
  if (std::rename(partial.c_str(), path_.c_str()) != 0)
    throw_input_error(path_, ": cannot rename from ", partial, ": ", std::strerror(errno));
  discard();
  closed_ = true;
}

void write_binary(const std::string& path, const ExampleColumns& data) {
  BinaryWriter writer(path, data.schema());
  writer.write(data);
  writer.close();
}

// ---------------------------------------------------------------- reader

BinaryReader::BinaryReader(std::string path) : file_(std::make_unique<MappedFile>(std::move(path))) {
  parse_header();
  file_->advise_sequential();
  reset();
}

void BinaryReader::parse_header() {
  const std::string& path = file_->path();
  const uint64_t size = file_->size();
  auto fail = [&](const auto&... what) { throw_input_error(path, ": ", what...); };
  if (size < kBinaryHeaderSize)
    fail("file is ", size, " bytes, shorter than the ", kBinaryHeaderSize, "-byte header (truncated?)");
  Header h;
  std::memcpy(&h, file_->data(), sizeof(h));
  if (std::memcmp(h.magic, kBinaryMagic, sizeof(h.magic)) != 0)
    fail("not a recmod binary data file (expected magic \"RECMODB\\0\" at offset 0)");
  if (h.version != kBinaryVersion)
    fail("unsupported format version ", h.version, " (this build reads version ", kBinaryVersion, ")");
  if (h.file_size != size)
    fail("header says the file is ", h.file_size, " bytes but it is ", size, " bytes (truncated or appended to?)");
  if (h.num_rows > (uint64_t{1} << 40) || h.num_labels > 4096 || h.num_dense > (1u << 20) || h.num_sparse > (1u << 20))
    fail("implausible header counts (rows ", h.num_rows, ", labels ", h.num_labels, ", dense ", h.num_dense,
         ", sparse ", h.num_sparse, ")");

  // Every other count is bounded by the file's size through its blocks; the
  // row count is only when a row has at least one column.
  if (h.num_rows > 0 && h.num_labels == 0 && h.num_dense == 0 && h.num_sparse == 0)
    fail("header says ", h.num_rows, " rows but no columns (no labels, dense or sparse features)");

  // A block of `count` elements of `elem` bytes at `offset` must lie inside
  // the file and be aligned for its element type. Counts are bounded above,
  // so count * elem cannot overflow.
  auto check_block = [&](const char* what, uint64_t offset, uint64_t count, uint64_t elem) {
    if (count > size / elem + 1 || offset > size || count * elem > size - offset || offset % elem != 0)
      fail(what, " block (", count, " x ", elem, " bytes at offset ", offset, ") does not fit in the ", size,
           "-byte file");
  };

  const uint64_t n = h.num_rows;
  if (kBinaryHeaderSize + uint64_t{h.names_size} > size) fail("feature names run past the end of the file");
  const char* names = file_->data() + kBinaryHeaderSize;
  const char* names_end = names + h.names_size;
  schema_ = DataSchema{};
  for (const char* p = names; p < names_end;) {
    const auto* nul = static_cast<const char*>(std::memchr(p, '\0', names_end - p));
    if (!nul) fail("feature names are not '\\0'-terminated");
    schema_.sparse_features.emplace_back(p, nul - p);
    p = nul + 1;
  }
  if (schema_.sparse_features.size() != h.num_sparse)
    fail("header says ", h.num_sparse, " sparse features but names ", schema_.sparse_features.size());
  schema_.num_dense = h.num_dense;
  schema_.num_labels = h.num_labels;
  schema_.weighted = (h.flags & kFlagWeighted) != 0;
  num_rows_ = static_cast<int64_t>(n);

  const uint64_t table_offset = align_up(kBinaryHeaderSize + h.names_size, 8);
  check_block("feature table", table_offset, uint64_t{h.num_sparse} * 4, 8);
  check_block("labels", h.labels_offset, n * h.num_labels, 4);
  check_block("dense", h.dense_offset, n * h.num_dense, 4);
  labels_offset_ = h.labels_offset;
  dense_offset_ = h.dense_offset;

  features_.resize(h.num_sparse);
  for (size_t f = 0; f < features_.size(); ++f) {
    const uint64_t* e = block<uint64_t>(table_offset + 32 * f);
    auto& fb = features_[f];
    fb = FeatureBlock{e[0], e[1], e[2], e[3]};
    const std::string& name = schema_.sparse_features[f];
    check_block(("lengths of " + name).c_str(), fb.lengths_offset, n, 4);
    check_block(("ids of " + name).c_str(), fb.ids_offset, fb.num_ids, 8);
    if (schema_.weighted) check_block(("weights of " + name).c_str(), fb.weights_offset, fb.num_ids, 4);
    // Lengths decide which ids each row reads; check them once here so no
    // later slice can run past the ids block.
    const int32_t* lengths = block<int32_t>(fb.lengths_offset);
    uint64_t sum = 0;
    for (uint64_t r = 0; r < n; ++r) {
      if (lengths[r] < 0) fail("feature ", name, ": row ", r, " has length ", lengths[r], " (expected >= 0)");
      sum += static_cast<uint64_t>(lengths[r]);
    }
    if (sum != fb.num_ids) fail("feature ", name, ": lengths sum to ", sum, " but the header says ", fb.num_ids, " ids");
  }
}

void BinaryReader::check_finite(const char* what, const float* values, int64_t rows, int64_t width,
                                int64_t first_row) const {
  // Checked per block read, not on open: a NaN would reach the loss as NaN.
  for (int64_t i = 0; i < rows * width; ++i)
    if (!std::isfinite(values[i]))
      throw_input_error(file_->path(), ": row ", first_row + i / width, ": ", what, "[", i % width, "] is ",
                        values[i], " (expected finite numbers)");
}

void BinaryReader::check_binary_labels(const float* labels, int64_t rows, int64_t width, int64_t first_row) const {
  if (binary_labels_.empty()) return;
  for (int64_t l = 0; l < width; ++l) {
    if (static_cast<size_t>(l) >= binary_labels_.size() || !binary_labels_[static_cast<size_t>(l)]) continue;
    for (int64_t r = 0; r < rows; ++r) {
      const float y = labels[r * width + l];
      if (y != 0.0f && y != 1.0f)
        throw_input_error(file_->path(), ": record ", first_row + r + 1, " (row ", first_row + r, "): label",
                          width > 1 ? str_cat("[", l, "]") : std::string(), " is ", y,
                          " (expected 0 or 1: the loss is binary cross-entropy)");
    }
  }
}

void BinaryReader::reset() {
  row_ = 0;
  id_cursor_.assign(features_.size(), 0);
}

std::optional<ExampleColumns> BinaryReader::read(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "BinaryReader::read: expected max_rows > 0, got ", max_rows);
  if (row_ >= num_rows_) return std::nullopt;
  ExampleColumns out(schema_);
  read_into(max_rows, out);
  return out;
}

int64_t BinaryReader::read_into(int64_t max_rows, ExampleColumns& out) {
  if (row_ >= num_rows_ || max_rows <= 0) return 0;
  const int64_t begin = row_, end = std::min(num_rows_, row_ + max_rows), n = end - begin;
  const int64_t nl = schema_.num_labels, nd = schema_.num_dense;
  const float* labels = block<float>(labels_offset_) + begin * nl;
  const float* dense = block<float>(dense_offset_) + begin * nd;
  check_finite("label", labels, n, nl, begin);
  check_binary_labels(labels, n, nl, begin);
  check_finite("dense", dense, n, nd, begin);
  out.labels.insert(out.labels.end(), labels, labels + n * nl);
  out.dense.insert(out.dense.end(), dense, dense + n * nd);
  for (size_t f = 0; f < features_.size(); ++f) {
    const auto& fb = features_[f];
    auto& col = out.sparse[f];
    const int32_t* lengths = block<int32_t>(fb.lengths_offset) + begin;
    const int64_t base = col.offsets.back();
    for (int64_t r = 0; r < n; ++r) col.offsets.push_back(col.offsets.back() + lengths[r]);
    const uint64_t first = id_cursor_[f], count = static_cast<uint64_t>(col.offsets.back() - base);
    const int64_t* ids = block<int64_t>(fb.ids_offset) + first;
    col.ids.insert(col.ids.end(), ids, ids + count);
    if (schema_.weighted) {
      const float* w = block<float>(fb.weights_offset) + first;
      col.weights.insert(col.weights.end(), w, w + count);
    }
    id_cursor_[f] += count;
  }
  for (int64_t r = 0; r < n; ++r) out.finish_row();
  file_->check_not_cut();  // a file cut short under the mapping reads as zeros
  row_ = end;
  report_.rows_read += n;
  return n;
}

int64_t BinaryReader::skip(int64_t n) {
  const int64_t begin = row_, end = std::min(num_rows_, row_ + std::max<int64_t>(n, 0));
  for (size_t f = 0; f < features_.size(); ++f) {
    const int32_t* lengths = block<int32_t>(features_[f].lengths_offset);
    uint64_t count = 0;
    for (int64_t r = begin; r < end; ++r) count += static_cast<uint64_t>(lengths[r]);
    id_cursor_[f] += count;
  }
  row_ = end;
  return end - begin;
}

std::optional<Batch> BinaryReader::read_batch(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "BinaryReader::read_batch: expected max_rows > 0, got ", max_rows);
  if (row_ >= num_rows_) return std::nullopt;
  const int64_t begin = row_, end = std::min(num_rows_, row_ + max_rows), n = end - begin;
  const int64_t nl = schema_.num_labels, nd = schema_.num_dense;
  const auto num_features = static_cast<int64_t>(features_.size());

  check_finite("label", block<float>(labels_offset_) + begin * nl, n, nl, begin);
  check_binary_labels(block<float>(labels_offset_) + begin * nl, n, nl, begin);
  check_finite("dense", block<float>(dense_offset_) + begin * nd, n, nd, begin);
  Batch batch;
  batch.labels = torch::empty({n, nl}, torch::kFloat);
  batch.dense = torch::empty({n, nd}, torch::kFloat);
  copy_elements(batch.labels.data_ptr<float>(), block<float>(labels_offset_) + begin * nl, n * nl);
  copy_elements(batch.dense.data_ptr<float>(), block<float>(dense_offset_) + begin * nd, n * nd);

  auto lengths = torch::empty({num_features * n}, torch::kLong);
  int64_t* l = lengths.data_ptr<int64_t>();
  std::vector<uint64_t> counts(features_.size());
  uint64_t total = 0;
  for (size_t f = 0; f < features_.size(); ++f) {
    const int32_t* src = block<int32_t>(features_[f].lengths_offset) + begin;
    uint64_t count = 0;
    for (int64_t r = 0; r < n; ++r) count += static_cast<uint64_t>(l[r] = src[r]);
    l += n;
    counts[f] = count;
    total += count;
  }
  auto values = torch::empty({static_cast<int64_t>(total)}, torch::kLong);
  std::optional<torch::Tensor> weights;
  if (schema_.weighted) weights = torch::empty({static_cast<int64_t>(total)}, torch::kFloat);
  int64_t* v = values.data_ptr<int64_t>();
  float* w = weights ? weights->data_ptr<float>() : nullptr;
  for (size_t f = 0; f < features_.size(); ++f) {
    const uint64_t first = id_cursor_[f], count = counts[f];
    copy_elements(v, block<int64_t>(features_[f].ids_offset) + first, count);
    v += count;
    if (w) {
      copy_elements(w, block<float>(features_[f].weights_offset) + first, count);
      w += count;
    }
    id_cursor_[f] += count;
  }
  file_->check_not_cut();  // a file cut short under the mapping reads as zeros
  batch.sparse = KeyedJaggedTensor::unchecked(schema_.sparse_features, values, lengths, weights, n);
  row_ = end;
  report_.rows_read += n;
  return batch;
}

}  // namespace recmod::data
