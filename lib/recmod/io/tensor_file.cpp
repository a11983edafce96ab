#include "recmod/io/tensor_file.h"

#include <c10/core/CPUAllocator.h>
#include <caffe2/serialize/inline_container.h>
#include <sys/mman.h>
#include <torch/serialize.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/io/atomic_file.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/torch_pickle.h"
#include "recmod/io/zip_reader.h"

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

/// The first line of a c10::Error's message, without its C++ stack trace.
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

/// A mapped storage's DataPtr context: a reference to its file's mapping.
void release_mapping_reference(void* context) { delete static_cast<std::shared_ptr<MappedCheckpoint>*>(context); }

/// The mapping `storage` lies in; nullptr for any other storage.
const MappedCheckpoint* mapping_of(const c10::Storage& storage) {
  const at::DataPtr& data = storage.data_ptr();
  if (data.get_deleter() != &release_mapping_reference) return nullptr;
  return static_cast<std::shared_ptr<MappedCheckpoint>*>(data.get_context())->get();
}

StateDict read_tensors(const std::string& path, bool mapped, bool release_verified = false) {
  // The zip container, checked against the file before anything is
  // allocated; the format version is checked first.
  const ZipArchive archive(path);
  try {
    if (!archive.find("data.pkl"))
      throw CheckpointError(str_cat(path, ": not a torch.save file: the archive has no data.pkl"));
    if (archive.find("byteorder")) {  // torch >= 2.1 records it; absent means little-endian
      const std::string order = archive.read_text("byteorder");
      if (order != "little")
        throw CheckpointError(str_cat(path, ": saved with byte order '", order, "', only 'little' is supported"));
    }
    const std::string pickle = archive.read_text("data.pkl");
    StateDict out = unpickle_tensor_dict(
        pickle,
        [&](const std::string& key) {
          const std::string name = "data/" + key;
          const ZipArchive::Record* record = archive.find(name);
          if (!record)
            throw CheckpointError(str_cat(path, ": data.pkl names storage '", key, "', but the archive has no ", name));
          if (mapped) {
            if (const char* bytes = archive.map_record(name, *record, release_verified)) {
              at::DataPtr data(const_cast<char*>(bytes), new std::shared_ptr<MappedCheckpoint>(archive.mapping()),
                               &release_mapping_reference, c10::Device(c10::kCPU));
              return c10::Storage(c10::Storage::use_byte_size_t(), record->size, std::move(data), nullptr, false);
            }
          }
          // At most the file's size in all: records do not overlap (ZipArchive).
          at::DataPtr data = c10::GetCPUAllocator()->allocate(record->size);
          archive.read(name, *record, data.get());
          return c10::Storage(c10::Storage::use_byte_size_t(), record->size, std::move(data), nullptr, false);
        },
        path);
    if (mapped) ::madvise(archive.mapping()->data(), archive.file_size(), MADV_NORMAL);  // verified: no more read-ahead
    return out;
  } catch (const CheckpointError&) {
    throw;
  } catch (const c10::Error& e) {
    throw CheckpointError(str_cat(path, ": cannot load the checkpoint: ", first_line(e.what_without_backtrace())));
  } catch (const std::exception& e) {
    throw CheckpointError(str_cat(path, ": cannot load the checkpoint: ", first_line(e.what())));
  }
}

}  // namespace

void write_tensors(const StateDict& tensors, const ByteSink& sink) { write_tensors(deferred(tensors), sink); }

void write_tensors(const DeferredStateDict& tensors, const ByteSink& sink) {
  // Written like Python's torch.save, not with torch::pickle_save: that one
  // tags the dict with torch.jit._pickle.restore_type_tag, a global that
  // torch.load(weights_only=True) refuses (its default since PyTorch 2.6).
  // The pickle needs only each tensor's shape and dtype: tensors on the meta
  // device stand in for the ones not made yet.
  std::set<std::string> keys;
  StateDict announced;
  for (const auto& entry : tensors) {
    TORCH_CHECK(keys.insert(entry.key).second, "save_tensors: key '", entry.key, "' appears twice");
    announced.emplace_back(entry.key, torch::empty(entry.sizes, torch::TensorOptions(entry.dtype).device(torch::kMeta)));
  }
  const std::string pickle = pickle_tensor_dict(announced);
  announced.clear();
  // The sink may throw (a full disk: FileWriteError). The exception must not
  // pass through the zip writer: its C code would be unwound, and its
  // destructor finishes the archive by writing again; a throw there is
  // std::terminate (a crash, and the temp file left behind). So the first
  // failure is kept, later bytes are dropped, and it is rethrown once the
  // writer is gone.
  std::exception_ptr failure;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
      if (failure) return n;
      try {
        sink(data, n);
      } catch (...) {
        failure = std::current_exception();
      }
      return n;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    const std::string order = "little";
    writer.writeRecord("byteorder", order.data(), order.size());
    // One tensor at a time: a copy (device tensors, views) or a gathered
    // tensor lives only while its record is written, so saving needs no
    // second copy of the model.
    for (size_t made = 0; made < tensors.size(); ++made) {
      const DeferredTensor& entry = tensors[made];
      const torch::Tensor made_tensor = entry.make();
      if (!made_tensor.defined() || made_tensor.sizes() != c10::IntArrayRef(entry.sizes) ||
          made_tensor.scalar_type() != entry.dtype)
        throw std::logic_error(str_cat("save_tensors: tensor '", entry.key, "' was announced as ", entry.dtype,
                                       c10::IntArrayRef(entry.sizes), " but made as ",
                                       made_tensor.defined() ? str_cat(made_tensor.scalar_type(), made_tensor.sizes())
                                                             : std::string("undefined")));
      if (failure) continue;  // the makes go on: other ranks may be waiting in them
      const torch::Tensor t = compact_cpu_copy(made_tensor);
      writer.writeRecord("data/" + std::to_string(made), t.data_ptr(), t.nbytes());
    }
    if (!failure) writer.writeEndOfFile();
  }
  if (failure) std::rethrow_exception(failure);
}

void make_and_drop(const DeferredStateDict& tensors) {
  for (const auto& entry : tensors) entry.make();
}

std::vector<char> tensors_to_bytes(const StateDict& tensors) {
  std::vector<char> bytes;
  write_tensors(tensors, [&](const void* data, size_t n) {
    bytes.insert(bytes.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
  });
  return bytes;
}

void save_tensors(const std::string& path, const StateDict& tensors) { save_tensors(path, deferred(tensors)); }

void save_tensors(const std::string& path, const DeferredStateDict& tensors) {
  write_file_atomically(path, [&](const ByteSink& sink) { write_tensors(tensors, sink); });
}

StateDict load_tensors(const std::string& path) { return read_tensors(path, /*mapped=*/false); }

StateDict map_tensors(const std::string& path, bool release_verified) {
  return read_tensors(path, /*mapped=*/true, release_verified);
}

bool is_mapped(const torch::Tensor& tensor) {
  return tensor.defined() && tensor.has_storage() && mapping_of(tensor.storage()) != nullptr;
}

void check_mapped_unchanged(const StateDict& tensors) {
  for (const auto& [key, tensor] : tensors)
    if (tensor.defined() && tensor.has_storage())
      if (const MappedCheckpoint* mapping = mapping_of(tensor.storage())) mapping->check_unchanged();
}

void release_mapped_pages(const StateDict& tensors) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (const auto& [key, tensor] : tensors) {
    if (!tensor.defined() || !tensor.has_storage() || !mapping_of(tensor.storage())) continue;
    // Whole pages inside the storage only: a page it shares with a neighbour
    // record stays.
    const auto begin = reinterpret_cast<uintptr_t>(tensor.storage().data());
    const uintptr_t first = (begin + page - 1) & ~(page - 1), last = (begin + tensor.storage().nbytes()) & ~(page - 1);
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
}

void release_mapped_bytes(const torch::Tensor& tensor, int64_t first, int64_t end) {
  if (!is_mapped(tensor) || end <= first) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // Whole pages inside both the range and the storage: a page shared with a
  // neighbour record stays.
  const auto storage = reinterpret_cast<uintptr_t>(tensor.storage().data());
  const auto data = reinterpret_cast<uintptr_t>(tensor.data_ptr());
  const uintptr_t lo = std::max(data + static_cast<uintptr_t>(first), storage);
  const uintptr_t hi = std::min(data + static_cast<uintptr_t>(end), storage + tensor.storage().nbytes());
  const uintptr_t from = (lo + page - 1) & ~(page - 1), to = hi & ~(page - 1);
  if (to > from) ::madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
}

}  // namespace recmod::io
