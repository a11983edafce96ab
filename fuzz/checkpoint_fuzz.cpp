// Checkpoints: load_tensors on arbitrary bytes returns tensors or throws
// CheckpointError; every tensor returned must be readable in full. The
// memory-mapped reader (map_tensors, what eval and resume use) must agree:
// the same error or the same tensors.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fuzz_util.h"
#include "recmod/common/errors.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = recmod::fuzz::write_scratch(data, size, ".pt");
  recmod::StateDict loaded;
  bool load_failed = false;
  try {
    loaded = recmod::io::load_tensors(path);
    for (const auto& [key, tensor] : loaded)
      if (tensor.numel() > 0) (void)tensor.to(torch::kDouble).sum().item<double>();  // touches every element
  } catch (const recmod::CheckpointError&) {
    load_failed = true;
  }
  try {
    const recmod::StateDict mapped = recmod::io::map_tensors(path);
    if (load_failed || mapped.size() != loaded.size()) std::abort();  // map_tensors accepted what load_tensors refused
    for (size_t i = 0; i < mapped.size(); ++i) {
      // Byte for byte (torch::equal would call a NaN unequal to itself).
      const torch::Tensor& a = mapped[i].second;
      const torch::Tensor& b = loaded[i].second;
      if (mapped[i].first != loaded[i].first || a.dtype() != b.dtype() || a.sizes() != b.sizes() ||
          a.strides() != b.strides())
        std::abort();
      const torch::Tensor ca = a.contiguous(), cb = b.contiguous();
      if (ca.numel() > 0 && std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) != 0) std::abort();
    }
  } catch (const recmod::CheckpointError&) {
    if (!load_failed) std::abort();  // map_tensors refused what load_tensors read
  }
  return 0;
}
