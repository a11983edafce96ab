#pragma once
// The CUDA kernels' name for a fused optimizer's row update, shared by the
// pooled (EmbeddingBagCollection) and sequence (EmbeddingCollection) lookups.

#include <stdexcept>

#include "recmod/cuda/tbe.h"
#include "recmod/optim/row_update.h"

namespace recmod {

inline cuda::TbeRule tbe_rule_of(optim::RowUpdate rule) {
  switch (rule) {
    case optim::RowUpdate::sgd:
      return cuda::TbeRule::sgd;
    case optim::RowUpdate::adagrad:
      return cuda::TbeRule::adagrad;
    case optim::RowUpdate::rowwise_adagrad:
      return cuda::TbeRule::rowwise_adagrad;
  }
  throw std::logic_error("tbe_rule_of: unknown rule");
}

}  // namespace recmod
