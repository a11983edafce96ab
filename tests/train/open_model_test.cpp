// Checkpoint tables adopted as the model's storage (issue 18: eval held the
// model twice while loading).
#include "recmod/train/open_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/io/zip_reader.h"
#include "recmod/modules/embedding_modules.h"
#include "support/test_util.h"

namespace recmod::train {
namespace open_model_test {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const char* kYaml = R"(features:
  dense: {count: 2}
  sparse: [C1, C2]
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 40, embedding_dim: 4, feature_names: [C1]}
      - {name: t2, num_embeddings: 30, embedding_dim: 4, feature_names: [C2]}
  x: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
)";

config::ModelConfig spec() {
  return config::parse_model_config(config::ConfigNode::load_string(kYaml, "a.yaml"));
}

/// Built as open_model does for a checkpoint: tables deferred, then
/// allocated unwritten.
config::ModelGraph unwritten() {
  config::ModelGraph graph{nullptr};
  {
    DeferTableAllocation defer(/*whole=*/true);
    graph = config::ModelGraph(static_cast<const config::ModelSpec&>(spec()));
  }
  materialize_deferred_tables(*graph, /*draw=*/false);
  return graph;
}

data::Batch batch() {
  data::Batch b;
  b.dense = torch::ones({2, 2});
  b.sparse = KeyedJaggedTensor::from_lengths({"C1", "C2"}, torch::tensor({3, 7, 29, 1}, torch::kLong),
                                             torch::tensor({1, 1, 1, 1}, torch::kLong));
  b.labels = torch::zeros({2, 1});
  return b;
}

StateDict saved_state(config::ModelGraph& source) {
  StateDict saved;
  for (const auto& [k, v] : state_dict(*source)) saved.emplace_back(k, v.clone());
  return saved;
}

TEST(AdoptCheckpointTables, TablesBecomeTheLoadedTensorsAndTheModelMatchesTheSource) {
  torch::manual_seed(0);
  config::ModelGraph source(static_cast<const config::ModelSpec&>(spec()));
  const StateDict saved = saved_state(source);
  auto graph = unwritten();
  EXPECT_EQ(adopt_checkpoint_tables(*graph, saved), 2);
  for (const auto& [k, v] : state_dict(*graph))
    if (k.find("embedding_bags") != std::string::npos) {
      EXPECT_EQ(v.data_ptr(), find_tensor(saved, k)->data_ptr()) << k << " was copied, not adopted";
    }
  recmod::load_state_dict(*graph, saved, "a.pt");  // the tables: same buffer, nothing to copy
  for (auto* g : {&graph, &source}) (*g)->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(graph->forward(batch()), source->forward(batch())));
}

TEST(AdoptCheckpointTables, AMismatchIsLeftForLoadStateDictToReport) {
  torch::manual_seed(0);
  config::ModelGraph source(static_cast<const config::ModelSpec&>(spec()));
  StateDict saved = saved_state(source);
  for (auto& [k, v] : saved)
    if (k == "sparse_arch.embedding_bags.t2.weight") v = torch::zeros({31, 4});
  auto graph = unwritten();
  EXPECT_EQ(adopt_checkpoint_tables(*graph, saved), 1);
  EXPECT_THAT(test::error_of<CheckpointError>([&] { recmod::load_state_dict(*graph, saved, "b.pt"); }),
              HasSubstr("[31, 4]"));
}


// open_model maps the checkpoint (issue 18): the tables are the file's pages.

struct SavedModel {
  std::string dir, config, checkpoint;
  StateDict state;
  SavedModel() : dir(std::string(::testing::TempDir()) + "recmod_open_mapped_" + std::to_string(::getpid())) {
    test::remove_tree(dir);
    std::filesystem::create_directories(dir);
    config = dir + "/a.yaml";
    checkpoint = dir + "/model.pt";
    std::ofstream(config) << kYaml;
    torch::manual_seed(3);
    config::ModelGraph source(static_cast<const config::ModelSpec&>(spec()));
    state = saved_state(source);
    io::save_tensors(checkpoint, state);
  }
  ~SavedModel() { test::remove_tree(dir); }
};

TEST(OpenModel, MappedCheckpointPredictsExactlyAsAHeapLoadedOne) {
  const SavedModel saved;
  OpenedModel mapped = open_model(saved.config, saved.checkpoint);
  int64_t mapped_tables = 0;
  for (const auto& [k, v] : state_dict(*mapped.model))
    if (k.find("embedding_bags") != std::string::npos) mapped_tables += io::is_mapped(v) ? 1 : 0;
  EXPECT_EQ(mapped_tables, 2);
  config::ModelGraph heap(static_cast<const config::ModelSpec&>(spec()));
  recmod::load_state_dict(*heap, io::load_tensors(saved.checkpoint), saved.checkpoint);
  for (auto* g : {&mapped.model, &heap}) (*g)->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor a = mapped.model->forward(batch()), b = heap->forward(batch());
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_EQ(std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()), 0);  // byte-identical
  EXPECT_NO_THROW(check_checkpoint_unchanged(mapped));
}

TEST(OpenModel, MappedCheckpointWithACorruptRecordIsRefused) {
  const SavedModel saved;
  const io::ZipArchive archive(saved.checkpoint);
  // The record of the first table (key order: sparse_arch's tables first).
  const io::ZipArchive::Record* record = archive.find("data/0");
  ASSERT_NE(record, nullptr);
  {
    std::fstream f(saved.checkpoint, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(record->offset + 5));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(static_cast<std::streamoff>(record->offset + 5));
    f.write(&c, 1);
  }
  EXPECT_THAT(test::error_of<CheckpointError>([&] { open_model(saved.config, saved.checkpoint); }),
              StartsWith(saved.checkpoint + ": record 'data/0' is corrupt: its bytes have CRC-32 0x"));
}

TEST(OpenModel, CheckpointCutWhileInUseIsAnErrorNotASigbus) {
  const SavedModel saved;
  OpenedModel opened = open_model(saved.config, saved.checkpoint);
  ASSERT_EQ(::truncate(saved.checkpoint.c_str(), 100), 0);
  opened.model->eval();
  {
    torch::NoGradGuard no_grad;
    opened.model->forward(batch());  // the tables' pages past the cut read as zeros
  }
  EXPECT_THAT(test::error_of<CheckpointError>([&] { check_checkpoint_unchanged(opened); }),
              StartsWith(saved.checkpoint + ": the checkpoint was cut short while in use (" ));
}

}  // namespace open_model_test
}  // namespace recmod::train
