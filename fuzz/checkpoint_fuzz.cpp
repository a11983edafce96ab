// Checkpoints: load_tensors on arbitrary bytes returns tensors or throws
// CheckpointError; every tensor returned must be readable in full.
#include <torch/torch.h>

#include <cstdint>

#include "fuzz_util.h"
#include "recmod/common/errors.h"
#include "recmod/io/tensor_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = recmod::fuzz::write_scratch(data, size, ".pt");
  try {
    for (const auto& [key, tensor] : recmod::io::load_tensors(path))
      if (tensor.numel() > 0) (void)tensor.to(torch::kDouble).sum().item<double>();  // touches every element
  } catch (const recmod::CheckpointError&) {
  }
  return 0;
}
