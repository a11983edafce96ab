#include "recmod/io/tensor_file.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/io/atomic_file.h"
#include "recmod/io/torch_pickle.h"

namespace recmod::io {

namespace {

/// A CPU tensor holding exactly `t`'s elements: pickling a view would write
/// its whole storage, and a device tensor could not be read without that device.
torch::Tensor compact_cpu_copy(const torch::Tensor& t) {
  torch::Tensor cpu = t.detach().to(torch::kCPU).contiguous();
  const bool owns_storage_exactly =
      cpu.storage_offset() == 0 && cpu.storage().nbytes() == static_cast<size_t>(cpu.nbytes());
  return owns_storage_exactly ? cpu : cpu.clone();
}

std::vector<char> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(str_cat(path, ": cannot open the checkpoint (", std::strerror(errno), ")"));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw CheckpointError(str_cat(path, ": cannot read the checkpoint"));
  return bytes;
}

/// Lets the zip reader read a file already in memory (we check its tail first).
class MemoryReadAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit MemoryReadAdapter(std::vector<char> bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    const size_t count = std::min<uint64_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, count);
    return count;
  }

 private:
  std::vector<char> bytes_;
};

std::string record_text(caffe2::serialize::PyTorchStreamReader& reader, const std::string& name) {
  auto [data, size] = reader.getRecord(name);
  return std::string(static_cast<const char*>(data.get()), size);
}

/// The first line of a c10::Error's message, without its C++ stack trace.
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

}  // namespace

void write_tensors(const StateDict& tensors, const ByteSink& sink) {
  // Written like Python's torch.save, not with torch::pickle_save: that one
  // tags the dict with torch.jit._pickle.restore_type_tag, a global that
  // torch.load(weights_only=True) refuses (its default since PyTorch 2.6).
  std::set<std::string> keys;
  for (const auto& [key, tensor] : tensors) {
    TORCH_CHECK(tensor.defined(), "save_tensors: tensor '", key, "' is undefined");
    TORCH_CHECK(keys.insert(key).second, "save_tensors: key '", key, "' appears twice");
  }
  const std::string pickle = pickle_tensor_dict(tensors);
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
    sink(data, n);
    return n;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  const std::string order = "little";
  writer.writeRecord("byteorder", order.data(), order.size());
  // One tensor at a time: a copy (device tensors, views) lives only while
  // its record is written, so saving needs no second copy of the model.
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor t = compact_cpu_copy(tensors[i].second);
    writer.writeRecord("data/" + std::to_string(i), t.data_ptr(), t.nbytes());
  }
  writer.writeEndOfFile();
}

std::vector<char> tensors_to_bytes(const StateDict& tensors) {
  std::vector<char> bytes;
  write_tensors(tensors, [&](const void* data, size_t n) {
    bytes.insert(bytes.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
  });
  return bytes;
}

void save_tensors(const std::string& path, const StateDict& tensors) {
  write_file_atomically(path, [&](const ByteSink& sink) { write_tensors(tensors, sink); });
}

StateDict load_tensors(const std::string& path) {
  std::vector<char> bytes = read_whole_file(path);
  if (bytes.empty()) throw CheckpointError(str_cat(path, ": the checkpoint is empty"));
  // torch.save's zip ends with the 22-byte end-of-central-directory record
  // (no comment); the zip reader tolerates a cut tail, so check it here.
  constexpr size_t kEndRecord = 22;
  if (bytes.size() < kEndRecord || std::memcmp(bytes.data() + bytes.size() - kEndRecord, "PK\x05\x06", 4) != 0)
    throw CheckpointError(str_cat(path, ": not a readable torch.save file (truncated or corrupt?): no zip end record"));
  try {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<MemoryReadAdapter>(std::move(bytes)));
    if (!reader.hasRecord("data.pkl"))
      throw CheckpointError(str_cat(path, ": not a torch.save file: the archive has no data.pkl"));
    if (reader.hasRecord("byteorder")) {  // torch >= 2.1 records it; absent means little-endian
      const std::string order = record_text(reader, "byteorder");
      if (order != "little")
        throw CheckpointError(str_cat(path, ": saved with byte order '", order, "', only 'little' is supported"));
    }
    const std::string pickle = record_text(reader, "data.pkl");
    return unpickle_tensor_dict(
        pickle,
        [&](const std::string& key) {
          const std::string name = "data/" + key;
          if (!reader.hasRecord(name))
            throw CheckpointError(str_cat(path, ": data.pkl names storage '", key, "', but the archive has no ", name));
          auto [data, size] = reader.getRecord(name);
          return c10::Storage(c10::Storage::use_byte_size_t(), size, std::move(data), nullptr, false);
        },
        path);
  } catch (const CheckpointError&) {
    throw;
  } catch (const c10::Error& e) {
    throw CheckpointError(
        str_cat(path, ": not a readable torch.save file (truncated or corrupt?): ", first_line(e.what_without_backtrace())));
  } catch (const std::exception& e) {
    throw CheckpointError(str_cat(path, ": not a readable torch.save file (truncated or corrupt?): ", first_line(e.what())));
  }
}

}  // namespace recmod::io
