// The unpickler behind load_tensors, fed directly (the zip container hides
// most mutations from the checkpoint target). Every storage key resolves to
// a 64-byte storage; tensors returned must lie inside it.
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <cstdint>
#include <string_view>

#include "recmod/common/errors.h"
#include "recmod/io/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view pickle(reinterpret_cast<const char*>(data), size);
  auto storage = [](const std::string&) {
    return c10::Storage(c10::Storage::use_byte_size_t(), 64, c10::GetDefaultCPUAllocator()->allocate(64), nullptr,
                        false);
  };
  try {
    for (const auto& [key, tensor] : recmod::io::unpickle_tensor_dict(pickle, storage, "fuzz.pkl"))
      if (tensor.numel() > 0) (void)tensor.to(torch::kDouble).sum().item<double>();
  } catch (const recmod::CheckpointError&) {
  }
  return 0;
}
