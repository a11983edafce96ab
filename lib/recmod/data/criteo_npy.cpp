#include "recmod/data/criteo_npy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "recmod/common/errors.h"
#include "recmod/common/strings.h"

namespace recmod::data {

namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";  // 6 bytes
const char* const kSuffixes[] = {"_dense.npy", "_sparse.npy", "_labels.npy"};

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The value of 'key' in the header's dict text, up to the next ',' at depth 0.
std::string dict_value(const std::string& dict, const std::string& key, const std::string& path) {
  const std::string quoted = "'" + key + "'";
  auto at = dict.find(quoted);
  if (at == std::string::npos) throw_input_error(path, ": .npy header has no '", key, "' (header ", dict, ")");
  at = dict.find(':', at + quoted.size());
  if (at == std::string::npos) throw_input_error(path, ": .npy header: expected ':' after '", key, "'");
  size_t end = at + 1;
  int depth = 0;
  for (; end < dict.size(); ++end) {
    const char c = dict[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if ((c == ',' && depth == 0) || (c == '}' && depth <= 0)) break;
  }
  std::string v = dict.substr(at + 1, end - at - 1);
  v.erase(0, v.find_first_not_of(" "));
  v.erase(v.find_last_not_of(" ") + 1);
  return v;
}

template <typename T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

NpyHeader parse_npy_header(const char* data, size_t size, const std::string& path) {
  if (size < 10 || std::memcmp(data, kNpyMagic, 6) != 0)
    throw_input_error(path, ": not a NumPy .npy file (expected the magic \\x93NUMPY at byte 0)");
  const int major = static_cast<unsigned char>(data[6]);
  if (major < 1 || major > 3)
    throw_input_error(path, ": .npy format version ", major, ".", static_cast<int>(data[7]),
                      "; expected 1.0, 2.0 or 3.0");
  const size_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) throw_input_error(path, ": .npy file cut short in its header");
  const size_t header_len = major == 1 ? load<uint16_t>(data + 8) : load<uint32_t>(data + 8);
  if (header_len > size - prefix)
    throw_input_error(path, ": .npy header says ", header_len, " bytes, the file has ", size - prefix, " after the prefix");
  const std::string dict(data + prefix, header_len);
  NpyHeader h;
  h.data_offset = prefix + header_len;
  std::string descr = dict_value(dict, "descr", path);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"'))
    throw_input_error(path, ": .npy header: expected a string 'descr', found ", descr);
  h.descr = descr.substr(1, descr.size() - 2);
  if (h.descr.size() >= 2 && h.descr[0] == '|') h.descr[0] = '<';  // one-byte types have no byte order
  if (h.descr.size() < 3 || (h.descr[0] != '<' && h.descr[0] != '=') || !std::isdigit(static_cast<unsigned char>(h.descr[2])))
    throw_input_error(path, ": .npy element type '", h.descr, "'; expected a little-endian number type such as <f4 or <i4");
  h.descr[0] = '<';
  if (dict_value(dict, "fortran_order", path) != "False")
    throw_input_error(path, ": a Fortran-order .npy array; expected C order (numpy.ascontiguousarray before numpy.save)");
  std::string shape = dict_value(dict, "shape", path);
  if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')')
    throw_input_error(path, ": .npy header: expected a shape tuple, found ", shape);
  shape = shape.substr(1, shape.size() - 2);
  size_t pos = 0;
  while (pos < shape.size()) {
    const size_t comma = shape.find(',', pos);
    std::string item = shape.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    item.erase(0, item.find_first_not_of(" "));
    item.erase(item.find_last_not_of(" ") + 1);
    if (!item.empty()) {
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (*end != '\0' || v < 0) throw_input_error(path, ": .npy header: bad shape entry '", item, "'");
      h.shape.push_back(v);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  // Elements must all be in the file (a .npy cut short is refused here, not read past).
  long double elements = 1;
  for (int64_t d : h.shape) elements *= static_cast<long double>(d);
  const long double bytes = elements * static_cast<long double>(h.item_size());
  if (bytes > static_cast<long double>(size - h.data_offset))
    throw_input_error(path, ": .npy header says shape (", join_names([&] {
                        std::vector<std::string> s;
                        for (int64_t d : h.shape) s.push_back(std::to_string(d));
                        return s;
                      }()),
                      ") of ", h.descr, " (", static_cast<double>(bytes), " bytes), the file holds ",
                      size - h.data_offset, " bytes of data; is it cut short?");
  return h;
}

std::vector<std::string> criteo_npy_paths(const std::string& path) {
  std::string prefix = path;
  for (const char* s : kSuffixes)
    if (ends_with(path, s)) prefix = path.substr(0, path.size() - std::strlen(s));
  std::vector<std::string> out;
  for (const char* s : kSuffixes) out.push_back(prefix + s);
  return out;
}

bool is_criteo_npy(const std::string& path) {
  for (const char* s : kSuffixes)
    if (ends_with(path, s)) return true;
  return !file_exists(path) && file_exists(path + kSuffixes[0]);
}

CriteoNpyReader::Array CriteoNpyReader::open_array(const std::string& path, const std::vector<std::string>& descrs,
                                                   const char* what) {
  if (!file_exists(path))
    throw_input_error(path, ": no such file; TorchRec's Criteo .npy format is three files, <prefix>_dense.npy, "
                      "<prefix>_sparse.npy and <prefix>_labels.npy");
  Array a;
  a.file = std::make_unique<MappedFile>(path);
  a.header = parse_npy_header(a.file->data(), a.file->size(), path);
  if (std::find(descrs.begin(), descrs.end(), a.header.descr) == descrs.end())
    throw_input_error(path, ": ", what, " of type ", a.header.descr, "; expected one of ", join_names(descrs));
  const auto& shape = a.header.shape;
  if (shape.empty() || shape.size() > 2)
    throw_input_error(path, ": ", what, " must be a 2-d array (rows, columns), found ", shape.size(), " dimensions");
  a.columns = shape.size() == 2 ? shape[1] : 1;
  return a;
}

CriteoNpyReader::CriteoNpyReader(const std::string& path) {
  const auto paths = criteo_npy_paths(path);
  dense_ = open_array(paths[0], {"<f4", "<f8"}, "the dense features");
  sparse_ = open_array(paths[1], {"<i4", "<i8"}, "the sparse ids");
  labels_ = open_array(paths[2], {"<i4", "<i8", "<f4"}, "the labels");
  num_rows_ = dense_.header.shape[0];
  for (const Array* a : {&sparse_, &labels_})
    if (a->header.shape[0] != num_rows_)
      throw_input_error(a->file->path(), ": ", a->header.shape[0], " rows, but ", dense_.file->path(), " has ", num_rows_,
                        "; the three files of a day must have the same rows");
  if (labels_.columns != 1)
    throw_input_error(labels_.file->path(), ": expected one label column (shape (N, 1)), found ", labels_.columns);
  schema_.num_dense = dense_.columns;
  schema_.num_labels = 1;
  for (int64_t f = 0; f < sparse_.columns; ++f) schema_.sparse_features.push_back("C" + std::to_string(f + 1));
  for (const Array* a : {&dense_, &sparse_, &labels_}) a->file->advise_sequential();
}

std::optional<ExampleColumns> CriteoNpyReader::read(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "CriteoNpyReader::read: expected max_rows > 0, got ", max_rows);
  if (next_row_ >= num_rows_) return std::nullopt;
  ExampleColumns out(schema_);
  read_into(max_rows, out);
  return out;
}

int64_t CriteoNpyReader::read_into(int64_t max_rows, ExampleColumns& out) {
  const int64_t n = std::min(max_rows, num_rows_ - next_row_);
  if (n <= 0) return 0;
  const int64_t nd = schema_.num_dense, ns = sparse_.columns;
  const bool dense32 = dense_.header.descr == "<f4", sparse32 = sparse_.header.descr == "<i4";
  const char* d = dense_.at(next_row_);
  for (int64_t i = 0; i < n * nd; ++i) {
    const float x = dense32 ? load<float>(d + 4 * i) : static_cast<float>(load<double>(d + 8 * i));
    if (!std::isfinite(x))
      throw_input_error(dense_.file->path(), ": row ", next_row_ + i / nd, " (0-based), column ", i % nd,
                        ": expected a finite dense value, found ", x);
    out.dense.push_back(x);
  }
  const char* l = labels_.at(next_row_);
  for (int64_t r = 0; r < n; ++r) {
    const double y = labels_.header.descr == "<i4"   ? load<int32_t>(l + 4 * r)
                     : labels_.header.descr == "<i8" ? static_cast<double>(load<int64_t>(l + 8 * r))
                                                     : load<float>(l + 4 * r);
    if (y != 0.0 && y != 1.0)
      throw_input_error(labels_.file->path(), ": row ", next_row_ + r, " (0-based): expected label 0 or 1 (the loss "
                        "is binary cross-entropy), found ", y);
    out.labels.push_back(static_cast<float>(y));
  }
  const char* s = sparse_.at(next_row_);
  for (int64_t f = 0; f < ns; ++f) {
    auto& col = out.sparse[static_cast<size_t>(f)];
    for (int64_t r = 0; r < n; ++r) {
      const int64_t k = r * ns + f;
      col.ids.push_back(sparse32 ? load<int32_t>(s + 4 * k) : load<int64_t>(s + 8 * k));
      col.offsets.push_back(static_cast<int64_t>(col.ids.size()));
    }
  }
  for (int64_t r = 0; r < n; ++r) out.finish_row();
  for (const Array* a : {&dense_, &sparse_, &labels_}) a->file->check_not_cut();
  next_row_ += n;
  report_.rows_read += n;
  return n;
}

int64_t CriteoNpyReader::skip(int64_t n) {
  const int64_t passed = std::min(num_rows_ - next_row_, std::max<int64_t>(n, 0));
  next_row_ += passed;
  return passed;
}

namespace {

void write_npy(const std::string& path, const char* descr, int64_t rows, int64_t columns, const void* data,
               size_t bytes) {
  std::string dict = str_cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", rows, ", ", columns, "), }");
  // magic + version + u16 length + dict + padding + '\n', a multiple of 64 bytes.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw_input_error(path, ": cannot write: ", std::strerror(errno));
  const auto len = static_cast<uint16_t>(dict.size());
  bool ok = std::fwrite(kNpyMagic, 1, 6, f) == 6 && std::fputc(1, f) != EOF && std::fputc(0, f) != EOF &&
            std::fwrite(&len, 2, 1, f) == 1 && std::fwrite(dict.data(), 1, dict.size(), f) == dict.size() &&
            (bytes == 0 || std::fwrite(data, 1, bytes, f) == bytes);
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw_input_error(path, ": cannot write (disk full?)");
}

}  // namespace

void write_criteo_npy(const std::string& prefix, const ExampleColumns& data) {
  const auto& schema = data.schema();
  const int64_t n = data.num_rows();
  const auto paths = criteo_npy_paths(prefix);
  if (schema.num_labels != 1)
    throw_input_error(paths[2], ": TorchRec's Criteo .npy holds one label per example, the data has ", schema.num_labels);
  if (schema.weighted || schema.sample_weights)
    throw_input_error(paths[1], ": TorchRec's Criteo .npy holds no weights, the data is weighted");
  std::vector<int32_t> sparse(static_cast<size_t>(n) * schema.sparse_features.size());
  std::vector<int32_t> labels(static_cast<size_t>(n));
  const size_t ns = schema.sparse_features.size();
  for (size_t f = 0; f < ns; ++f) {
    const auto& col = data.sparse[f];
    for (int64_t r = 0; r < n; ++r) {
      if (col.length(r) != 1)
        throw_input_error(paths[1], ": row ", r, " (0-based) has ", col.length(r), " ids of feature '",
                          schema.sparse_features[f], "'; TorchRec's Criteo .npy holds exactly one per feature");
      const int64_t id = col.ids[static_cast<size_t>(col.offsets[r])];
      if (id < std::numeric_limits<int32_t>::min() || id > std::numeric_limits<int32_t>::max())
        throw_input_error(paths[1], ": row ", r, " (0-based), feature '", schema.sparse_features[f], "': id ", id,
                          " does not fit in int32");
      sparse[static_cast<size_t>(r) * ns + f] = static_cast<int32_t>(id);
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    const float y = data.labels[static_cast<size_t>(r)];
    if (y != 0.0f && y != 1.0f) throw_input_error(paths[2], ": row ", r, " (0-based): expected label 0 or 1, found ", y);
    labels[static_cast<size_t>(r)] = static_cast<int32_t>(y);
  }
  write_npy(paths[0], "<f4", n, schema.num_dense, data.dense.data(), data.dense.size() * sizeof(float));
  write_npy(paths[1], "<i4", n, static_cast<int64_t>(ns), sparse.data(), sparse.size() * sizeof(int32_t));
  write_npy(paths[2], "<i4", n, 1, labels.data(), labels.size() * sizeof(int32_t));
}

}  // namespace recmod::data
