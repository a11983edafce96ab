#pragma once
// EmbeddingBagCollectionInterface and EmbeddingCollectionInterface, as
// torchrec.modules.embedding_modules: the abstract modules that
// EmbeddingBagCollection / EmbeddingCollection (float and quantized)
// implement, and that a custom embedding module implements to plug into
// EmbeddingTower, the managed-collision wrappers and a ModelGraph node
// (ModelGraphImpl::replace_embedding_module).
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

#include "recmod/modules/embedding_configs.h"
#include "recmod/sparse/jagged_tensor.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod {

/// Dict[str, JaggedTensor] with its key order (EmbeddingCollection's output).
using JaggedTensorDict = std::vector<std::pair<std::string, JaggedTensor>>;

/// TorchRec's EmbeddingBagCollectionInterface: pooled embeddings,
/// KeyedJaggedTensor in, KeyedTensor out. The contract the callers rely on
/// (as TorchRec's do): the output keys are the configs' embedding names
/// (get_embedding_names_by_table, flattened) in that order, key k
/// embedding_dim of its table wide; is_weighted() says the module reads the
/// KJT's weights (a tower then feeds it weighted_features).
///
/// Module is a virtual base, so that one Module is shared with other bases
/// that derive from it virtually: libtorch's torch::nn::Cloneable did before
/// PyTorch 2.2 (Debian's 1.13: a custom module may be Cloneable<Self> too);
/// from 2.2 Cloneable derives non-virtually and cannot be combined with it.
class EmbeddingBagCollectionInterface : public virtual torch::nn::Module {
 public:
  ~EmbeddingBagCollectionInterface() override = default;
  virtual KeyedTensor forward(const KeyedJaggedTensor& features) = 0;
  virtual const std::vector<EmbeddingBagConfig>& embedding_bag_configs() const = 0;
  virtual bool is_weighted() const = 0;
};

/// TorchRec's EmbeddingCollectionInterface: sequence embeddings,
/// KeyedJaggedTensor in, Dict[str, JaggedTensor] out, keys as
/// embedding_names_by_table() flattened, each (n_f, embedding_dim()) with
/// the input feature's lengths (and the ids as weights with need_indices()).
class EmbeddingCollectionInterface : public virtual torch::nn::Module {
 public:
  ~EmbeddingCollectionInterface() override = default;
  virtual JaggedTensorDict forward(const KeyedJaggedTensor& features) = 0;
  virtual const std::vector<EmbeddingConfig>& embedding_configs() const = 0;
  virtual bool need_indices() const = 0;
  virtual int64_t embedding_dim() const = 0;
  virtual const std::vector<std::vector<std::string>>& embedding_names_by_table() const = 0;
};

}  // namespace recmod
