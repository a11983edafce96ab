#include "recmod/dist/shard_block.h"

#include <torch/torch.h>

namespace recmod::dist {

void take_block(const torch::Tensor& weight, const torch::Tensor& block) {
  torch::NoGradGuard no_grad;
  auto& w = const_cast<torch::Tensor&>(weight);  // the parameter itself: its holders see the new data
  if (!w.is_meta() && block.sizes() == w.sizes() && block.scalar_type() == w.scalar_type() &&
      block.device() == w.device() && block.is_contiguous() && block.storage_offset() == 0 &&
      block.storage().nbytes() == block.nbytes())
    w.set_data(block);
  else
    w.copy_(block);
}

}  // namespace recmod::dist
