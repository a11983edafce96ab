#include "recmod/train/checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "recmod/common/errors.h"
#include "recmod/train/atomic_file.h"

namespace recmod::train {

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

/// The first line of a c10::Error's message, without its C++ stack trace.
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

}  // namespace

void save_tensors(const std::string& path, const StateDict& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [key, tensor] : tensors) {
    TORCH_CHECK(tensor.defined(), "save_tensors: tensor '", key, "' is undefined");
    TORCH_CHECK(!dict.contains(key), "save_tensors: key '", key, "' appears twice");
    dict.insert(key, compact_cpu_copy(tensor));
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomically(path, std::string_view(bytes.data(), bytes.size()));
}

StateDict load_tensors(const std::string& path) {
  const std::vector<char> bytes = read_whole_file(path);
  if (bytes.empty()) throw CheckpointError(str_cat(path, ": the checkpoint is empty"));
  // torch.save's zip ends with the 22-byte end-of-central-directory record
  // (no comment); the zip reader tolerates a cut tail, so check it here.
  constexpr size_t kEndRecord = 22;
  if (bytes.size() < kEndRecord || std::memcmp(bytes.data() + bytes.size() - kEndRecord, "PK\x05\x06", 4) != 0)
    throw CheckpointError(str_cat(path, ": not a readable torch.save file (truncated or corrupt?): no zip end record"));
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw CheckpointError(
        str_cat(path, ": not a readable torch.save file (truncated or corrupt?): ", first_line(e.what_without_backtrace())));
  } catch (const std::exception& e) {
    throw CheckpointError(str_cat(path, ": not a readable torch.save file (truncated or corrupt?): ", first_line(e.what())));
  }
  if (!value.isGenericDict())
    throw CheckpointError(str_cat(path, ": expected a dict of tensors, found a ", value.tagKind()));
  StateDict out;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString())
      throw CheckpointError(str_cat(path, ": expected a dict of tensors, found a key of type ", entry.key().tagKind()));
    const std::string key = entry.key().toStringRef();
    if (!entry.value().isTensor())
      throw CheckpointError(
          str_cat(path, ": expected a dict of tensors, key '", key, "' holds a ", entry.value().tagKind()));
    out.emplace_back(key, entry.value().toTensor());
  }
  return out;
}

}  // namespace recmod::train
