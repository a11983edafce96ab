// Deferred table allocation: a table built under DeferTableAllocation holds
// no memory, leaves torch's generator where a full init leaves it, and draws
// any block with exactly the values the full table has.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/modules/embedding_modules.h"

namespace recmod {
namespace deferred_tables_test {

std::vector<EmbeddingBagConfig> tables() {
  EmbeddingBagConfig a(1000, 24, "a", {"f1"});
  EmbeddingBagConfig b(77, 5, "b", {"f2"});
  b.data_type = DataType::FP16;  // stored as float16
  b.weight_init_min = -2.0;
  b.weight_init_max = 3.0;
  return {a, b};
}

TEST(DeferredTables, BlocksEqualTheFullInitAndTheGeneratorAdvancesAlike) {
  torch::manual_seed(11);
  EmbeddingBagCollection full(tables(), false);
  const torch::Tensor after_full = torch::rand({4});
  torch::manual_seed(11);
  std::optional<EmbeddingBagCollection> deferred;
  {
    DeferTableAllocation defer;
    deferred.emplace(tables(), false);
  }
  const torch::Tensor after_deferred = torch::rand({4});
  EXPECT_TRUE(torch::equal(after_full, after_deferred));  // the modules built next get the same weights
  EXPECT_TRUE((*deferred)->table_weight("a").is_meta());
  EXPECT_TRUE(torch::equal((*deferred)->table_block("a", 300, 250, 5, 11), full->table_weight("a").narrow(0, 300, 250).narrow(1, 5, 11)));
  EXPECT_TRUE(torch::equal((*deferred)->table_block("a", 0, 1000, 0, 24), full->table_weight("a")));
  EXPECT_TRUE(torch::equal((*deferred)->table_block("b", 70, 7, 0, 5), full->table_weight("b").narrow(0, 70, 7)));
  materialize_deferred_tables(**deferred);
  EXPECT_FALSE((*deferred)->table_weight("a").is_meta());
  EXPECT_TRUE(torch::equal((*deferred)->table_weight("a"), full->table_weight("a")));
  EXPECT_TRUE(torch::equal((*deferred)->table_weight("b"), full->table_weight("b")));
  EXPECT_EQ((*deferred)->table_weight("b").scalar_type(), torch::kHalf);
  // the materialized weight is the registered parameter
  EXPECT_TRUE(torch::equal((*deferred)->named_parameters()["embedding_bags.a.weight"], full->table_weight("a")));
}

TEST(DeferredTables, ACustomInitIsAllocatedAtOnce) {
  auto configs = tables();
  configs[0].init_fn = [](torch::Tensor& w) { w.fill_(0.5); };
  DeferTableAllocation defer;
  EmbeddingBagCollection ebc(configs, false);
  EXPECT_FALSE(ebc->table_weight("a").is_meta());
  EXPECT_EQ(ebc->table_weight("a").min().item<float>(), 0.5f);
  EXPECT_TRUE(ebc->table_weight("b").is_meta());
}

}  // namespace deferred_tables_test
}  // namespace recmod
