#include "recmod/quant/embedding_modules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "recmod/common/errors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/modules/embedding_modules.h"
#include "support/test_util.h"

namespace recmod::quant {
namespace quant_embedding_modules_test {

namespace fs = std::filesystem;
using FloatEBC = recmod::EmbeddingBagCollection;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string python_with_torch() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RECMOD_PYTHON")) candidates.emplace_back(env);
  candidates.insert(candidates.end(), {"python3", "/usr/bin/python3"});
  for (const auto& python : candidates)
    if (std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) return python;
  return "";
}

/// Three tables: t1 SUM (features f1, f2), t2 MEAN (f3; SUM when weighted,
/// as per-sample weights need), t3 SUM (f1, shared).
std::vector<EmbeddingBagConfig> float_tables(bool weighted = false) {
  return {EmbeddingBagConfig(20, 8, "t1", {"f1", "f2"}),
          EmbeddingBagConfig(30, 16, "t2", {"f3"}, weighted ? PoolingType::SUM : PoolingType::MEAN),
          EmbeddingBagConfig(10, 4, "t3", {"f1"})};
}

KeyedJaggedTensor input(bool weighted) {
  torch::manual_seed(4);
  // B = 3; lengths per key f1, f2, f3 (an empty bag in each).
  const torch::Tensor lengths = torch::tensor({2, 0, 3, 1, 1, 0, 0, 4, 2}, torch::kLong);
  const int64_t n = lengths.sum().item<int64_t>();
  torch::Tensor values = torch::randint(0, 10, {n}, torch::kLong);
  std::optional<torch::Tensor> w;
  if (weighted) w = torch::rand({n});
  return KeyedJaggedTensor::from_lengths({"f1", "f2", "f3"}, values, lengths, w);
}

/// The float module with the dequantized tables: what the quantized module must compute.
FloatEBC dequantized_copy(const EmbeddingBagCollectionImpl& q, bool weighted) {
  FloatEBC ebc(float_tables(weighted), weighted);
  torch::NoGradGuard no_grad;
  for (size_t t = 0; t < q.embedding_bag_configs().size(); ++t)
    const_cast<torch::Tensor&>(ebc->table_weight(q.embedding_bag_configs()[t].name)).copy_(q.dequantized_weight(t));
  return ebc;
}

TEST(QuantEmbeddingBagCollection, FromFloatPoolsLikeTheFloatModuleOnDequantizedTables) {
  for (bool weighted : {false, true}) {
    torch::manual_seed(1);
    FloatEBC ebc(float_tables(weighted), weighted);
    QuantConfig config;
    config.per_table_weight_dtype["t2"] = torch::kQUInt4x2;
    config.per_table_weight_dtype["t3"] = torch::kHalf;
    auto q = EmbeddingBagCollectionImpl::from_float(*ebc, config);
    EXPECT_EQ(q->embedding_bag_configs()[0].data_type, DataType::INT8);
    EXPECT_EQ(q->embedding_bag_configs()[1].data_type, DataType::INT4);
    EXPECT_EQ(q->embedding_bag_configs()[2].data_type, DataType::FP16);
    q->eval();
    const KeyedJaggedTensor kjt = input(weighted);
    const KeyedTensor got = q->forward(kjt);
    EXPECT_EQ(got.keys(), ebc->embedding_names());
    EXPECT_EQ(got.length_per_key(), ebc->length_per_embedding());
    torch::NoGradGuard no_grad;
    const KeyedTensor want = dequantized_copy(*q, weighted)->forward(kjt);
    EXPECT_TRUE(torch::allclose(got.values(), want.values(), 1e-5, 1e-6)) << weighted;
    // And close to the float model: INT8 rows are within half a step.
    EXPECT_TRUE(torch::allclose(got.values(), ebc->forward(kjt).values(), 0, 0.05)) << weighted;
  }
}

TEST(QuantEmbeddingBagCollection, StateDictHasTorchRecsKeysAndTheTorchOpBytes) {
  torch::manual_seed(2);
  FloatEBC ebc(float_tables(), false);
  QuantConfig config;
  config.per_table_weight_dtype["t2"] = torch::kQUInt2x4;
  config.per_table_weight_dtype["t3"] = torch::kFloat;
  auto q = EmbeddingBagCollectionImpl::from_float(*ebc, config);
  EXPECT_THAT(test::state_dict_keys(*q),
              ElementsAre("embedding_bags.t1.weight", "embedding_bags.t1.weight_qscale", "embedding_bags.t1.weight_qbias",
                          "embedding_bags.t2.weight", "embedding_bags.t2.weight_qscale", "embedding_bags.t2.weight_qbias",
                          "embedding_bags.t3.weight"));
  const StateDict state = state_dict(*q);
  const torch::Tensor fused1 = quantize_rows(ebc->table_weight("t1"), DataType::INT8);
  EXPECT_TRUE(torch::equal(state[0].second, fused1.narrow(1, 0, 8)));
  EXPECT_EQ(state[1].second.scalar_type(), torch::kFloat);
  EXPECT_EQ(state[1].second.sizes(), (std::vector<int64_t>{20, 1}));
  EXPECT_TRUE(torch::equal(state[1].second.contiguous().view(torch::kUInt8), fused1.narrow(1, 8, 4)));
  EXPECT_TRUE(torch::equal(state[2].second.contiguous().view(torch::kUInt8), fused1.narrow(1, 12, 4)));
  const torch::Tensor fused2 = quantize_rows(ebc->table_weight("t2"), DataType::INT2);
  EXPECT_EQ(state[3].second.sizes(), (std::vector<int64_t>{30, 4}));
  EXPECT_TRUE(torch::equal(state[3].second, fused2.narrow(1, 0, 4)));
  EXPECT_EQ(state[4].second.scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(state[4].second.contiguous().view(torch::kUInt8), fused2.narrow(1, 4, 2)));
  EXPECT_TRUE(torch::equal(state[6].second, ebc->table_weight("t3")));
  EXPECT_EQ(q->table_bytes(0), 20 * 16);  // 8 codes + 4 scale + 4 bias
  EXPECT_EQ(q->table_bytes(1), 30 * 8);   // 4 codes + 2 scale + 2 bias
}

TEST(QuantEmbeddingBagCollection, LoadsItsStateAndRefusesAMismatchNamingTheTable) {
  torch::manual_seed(3);
  FloatEBC ebc(float_tables(), false);
  QuantConfig config;
  config.per_table_weight_dtype["t2"] = torch::kQUInt4x2;
  auto q = EmbeddingBagCollectionImpl::from_float(*ebc, config);
  const StateDict saved = state_dict(*q);
  std::vector<EmbeddingBagConfig> tables = float_tables();
  update_embedding_configs(tables, config);
  EmbeddingBagCollectionImpl fresh(tables);
  fresh.load_quantized_state_dict(saved, "q.pt");
  fresh.eval();
  q->eval();
  EXPECT_TRUE(torch::equal(fresh.forward(input(false)).values(), q->forward(input(false)).values()));

  // INT8 scale and bias as float16 (TorchRec's INT8 rows): widened.
  StateDict half = saved;
  half[1].second = half[1].second.to(torch::kHalf);
  half[2].second = half[2].second.to(torch::kHalf);
  fresh.load_quantized_state_dict(half, "half.pt");
  EXPECT_TRUE(torch::equal(state_dict(fresh)[1].second, saved[1].second.to(torch::kHalf).to(torch::kFloat)));

  // t2 is INT4 (8 bytes of codes for D = 16); INT8 rows (16 bytes) are refused, naming the table.
  tables[1].data_type = DataType::INT8;
  auto q8 = EmbeddingBagCollectionImpl::from_float(*ebc, QuantConfig());
  StateDict wrong = saved;
  wrong[3].second = state_dict(*q8)[3].second;
  EXPECT_THAT(test::error_of<CheckpointError>([&] { fresh.load_quantized_state_dict(wrong, "w.pt"); }),
              HasSubstr("w.pt: table 't2' (INT4, 30 x 16): INT4 rows of dimension 16 have 8 bytes of codes, key "
                        "'embedding_bags.t2.weight' has shape [30, 16] (INT8 rows)"));
  StateDict bad_scale = saved;
  bad_scale[4].second = bad_scale[4].second.to(torch::kFloat);
  EXPECT_THAT(test::error_of<CheckpointError>([&] { fresh.load_quantized_state_dict(bad_scale, "s.pt"); }),
              HasSubstr("table 't2' (INT4, 30 x 16): key 'embedding_bags.t2.weight_qscale' is Float [30, 1], expected "
                        "Half [30, 1]"));
  StateDict missing(saved.begin(), saved.end());
  missing.erase(missing.begin() + 5);  // t2's weight_qbias
  EXPECT_THAT(test::error_of<CheckpointError>([&] { fresh.load_quantized_state_dict(missing, "m.pt"); }),
              HasSubstr("table 't2' (INT4, 30 x 16): missing key 'embedding_bags.t2.weight_qbias'"));
  StateDict as_float = saved;
  as_float[0].second = ebc->table_weight("t1");
  EXPECT_THAT(test::error_of<CheckpointError>([&] { fresh.load_quantized_state_dict(as_float, "f.pt"); }),
              HasSubstr("table 't1' (INT8, 20 x 8): key 'embedding_bags.t1.weight' is Float [20, 8], a quantized "
                        "table's codes are uint8"));
}

TEST(QuantEmbeddingBagCollection, RefusesToTrainAndBadIds) {
  FloatEBC ebc(float_tables(), false);
  auto q = EmbeddingBagCollectionImpl::from_float(*ebc, QuantConfig());
  EXPECT_THAT(test::error_of<InputError>([&] { q->forward(input(false)); }),
              HasSubstr("table 't1' is INT8 and cannot be trained: a quantized table stores codes with a per-row "
                        "scale and bias, which have no gradient"));
  {
    torch::NoGradGuard no_grad;  // inference in training mode is fine without grad
    EXPECT_NO_THROW(q->forward(input(false)));
  }
  q->eval();
  const auto kjt = KeyedJaggedTensor::from_lengths({"f1", "f2", "f3"}, torch::tensor({3, 35}, torch::kLong),
                                                   torch::tensor({1, 0, 0, 0, 0, 0, 1, 0, 0}, torch::kLong));
  EXPECT_THAT(test::error_of<InputError>([&] { q->forward(kjt); }),
              HasSubstr("id 35 of feature 'f3' is outside table 't2' (30 rows)"));
}

/// EmbeddingCollection tables (one dim): e1 INT8 (f1, f2), e2 INT4 (f3), e3 FP16 (f1).
std::vector<EmbeddingConfig> ec_tables() {
  std::vector<EmbeddingConfig> t = {EmbeddingConfig(20, 8, "e1", {"f1", "f2"}), EmbeddingConfig(30, 8, "e2", {"f3"}),
                                    EmbeddingConfig(10, 8, "e3", {"f1"})};
  return t;
}

QuantConfig ec_quant_config() {
  QuantConfig config;
  config.per_table_weight_dtype["e2"] = torch::kQUInt4x2;
  config.per_table_weight_dtype["e3"] = torch::kHalf;
  return config;
}

TEST(QuantEmbeddingCollection, FromFloatGivesTheDequantizedRowsOfEachIdWithinTheQuantizationStep) {
  torch::manual_seed(6);
  recmod::EmbeddingCollection ec(ec_tables(), /*need_indices=*/true);
  auto q = EmbeddingCollectionImpl::from_float(*ec, ec_quant_config());
  q->eval();
  const auto kjt = input(false);
  torch::NoGradGuard no_grad;
  const JaggedTensorDict want = ec->forward(kjt);
  const JaggedTensorDict got = q->forward(kjt);
  ASSERT_EQ(got.size(), want.size());
  const std::vector<std::pair<std::string, DataType>> tables = {
      {"e1", DataType::INT8}, {"e2", DataType::INT4}, {"e3", DataType::FP16}};
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(got[i].first);
    EXPECT_EQ(got[i].first, want[i].first);  // f1@e1, f2@e1, f3, f1@e3: the float module's names
    EXPECT_TRUE(torch::equal(got[i].second.lengths(), want[i].second.lengths()));
    EXPECT_TRUE(torch::equal(got[i].second.weights(), want[i].second.weights()));  // need_indices: the ids
    const std::string table = i < 2 ? "e1" : i == 2 ? "e2" : "e3";
    const DataType type = i < 2 ? DataType::INT8 : i == 2 ? DataType::INT4 : DataType::FP16;
    const torch::Tensor ids = want[i].second.weights().to(torch::kLong);
    const torch::Tensor w = ec->table_weight(table);
    // Exactly the rows the torch ops would dequantize ...
    const torch::Tensor exact = type == DataType::FP16
                                    ? w.to(torch::kHalf).to(torch::kFloat).index_select(0, ids)
                                    : dequantize_rows(quantize_rows(w, type), type, 8).index_select(0, ids);
    EXPECT_TRUE(torch::allclose(got[i].second.values(), exact, 0, 1e-7)) << got[i].second.values() - exact;
    // ... and within half a quantization step of the float rows: (max - min) / (2^b - 1) / 2 per row.
    // (FP16: within float16's rounding, 2^-11 relative.)
    const double levels = type == DataType::INT8 ? 255 : 15;
    const torch::Tensor range = (w.amax(1) - w.amin(1)).index_select(0, ids).unsqueeze(1);
    const torch::Tensor bound = type == DataType::FP16 ? want[i].second.values().abs() / 2048 + 1e-8
                                                       : range / levels / 2 + 1e-6;
    EXPECT_TRUE(((got[i].second.values() - want[i].second.values()).abs() <= bound).all().item<bool>());
  }
}

TEST(QuantEmbeddingCollection, StateDictRoundTripsAndMismatchesNameTheTable) {
  torch::manual_seed(7);
  recmod::EmbeddingCollection ec(ec_tables(), false);
  auto q = EmbeddingCollectionImpl::from_float(*ec, ec_quant_config());
  const StateDict saved = state_dict(*q);
  std::vector<std::string> keys;
  for (const auto& [k, v] : saved) keys.push_back(k);
  EXPECT_THAT(keys, ElementsAre("embeddings.e1.weight", "embeddings.e1.weight_qscale", "embeddings.e1.weight_qbias",
                                "embeddings.e2.weight", "embeddings.e2.weight_qscale", "embeddings.e2.weight_qbias",
                                "embeddings.e3.weight"));
  EXPECT_EQ(saved[3].second.sizes(), (std::vector<int64_t>{30, 4}));  // INT4: 4 bytes for 8 columns
  std::vector<EmbeddingConfig> tables = ec_tables();
  update_embedding_configs(tables, ec_quant_config());
  EmbeddingCollectionImpl fresh(EmbeddingCollectionOptions(tables).uninitialized(true));
  fresh.load_quantized_state_dict(saved, "q.pt");
  fresh.eval();
  q->eval();
  torch::NoGradGuard no_grad;
  const auto a = fresh.forward(input(false)), b = q->forward(input(false));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second.values(), b[i].second.values()));

  StateDict wrong = saved;
  wrong[3].second = saved[0].second.slice(0, 0, 20);  // INT8 codes (8 bytes) where e2 holds INT4 (4)
  EXPECT_THAT(test::error_of<CheckpointError>([&] { fresh.load_quantized_state_dict(wrong, "w.pt"); }),
              HasSubstr("w.pt: table 'e2' (INT4, 30 x 8): key 'embeddings.e2.weight' has 20 rows, the table has 30"));
}

TEST(QuantEmbeddingCollection, RefusesToTrainBadIdsAndMixedDims) {
  recmod::EmbeddingCollection ec(ec_tables(), false);
  auto q = EmbeddingCollectionImpl::from_float(*ec, QuantConfig());
  EXPECT_THAT(test::error_of<InputError>([&] { q->forward(input(false)); }),
              HasSubstr("quantized EmbeddingCollection: table 'e1' is INT8 and cannot be trained"));
  q->eval();
  const auto kjt = KeyedJaggedTensor::from_lengths({"f1", "f2", "f3"}, torch::tensor({3, 35}, torch::kLong),
                                                   torch::tensor({1, 0, 0, 0, 0, 0, 1, 0, 0}, torch::kLong));
  EXPECT_THAT(test::error_of<InputError>([&] { q->forward(kjt); }),
              HasSubstr("id 35 of feature 'f3' is outside table 'e2' (30 rows)"));
  std::vector<EmbeddingConfig> mixed = ec_tables();
  mixed[1].embedding_dim = 4;
  EXPECT_THAT(test::error_of<InputError>([&] { EmbeddingCollectionImpl bad(mixed); }),
              HasSubstr("all tables share one embedding_dim; table 'e2' has 4, table 'e1' 8"));
}

TEST(QuantEmbeddingBagCollection, CheckpointTypesAreReadFromWidthsAndScaleDtypes) {
  const auto u8 = [](int64_t w) { return torch::zeros({5, w}, torch::kUInt8); };
  const torch::Tensor f32 = torch::ones({5, 1});
  const torch::Tensor f16 = torch::ones({5, 1}, torch::kHalf);
  EXPECT_EQ(data_type_of_checkpoint(16, u8(16), f32, "t"), DataType::INT8);
  EXPECT_EQ(data_type_of_checkpoint(16, u8(16), f16, "t"), DataType::INT8);
  EXPECT_EQ(data_type_of_checkpoint(16, u8(8), f16, "t"), DataType::INT4);
  EXPECT_EQ(data_type_of_checkpoint(16, u8(4), f16, "t"), DataType::INT2);
  EXPECT_EQ(data_type_of_checkpoint(16, torch::zeros({5, 16}, torch::kHalf), torch::Tensor(), "t"), DataType::FP16);
  EXPECT_THAT(test::error_of<CheckpointError>([&] { data_type_of_checkpoint(16, u8(8), f32, "x.pt: table 't'"); }),
              HasSubstr("x.pt: table 't': 8 bytes of codes per row with a Float scale fit no type for dimension 16"));
  EXPECT_THAT(test::error_of<InputError>([] { check_distinguishable(DataType::INT2, 2, "t9"); }),
              HasSubstr("table 't9' of dimension 2 cannot be INT2"));
  EXPECT_NO_THROW(check_distinguishable(DataType::INT2, 3, "t9"));
}

TEST(QuantEmbeddingBagCollection, SavedStateDictReadsInPythonTorchAndPoolsLikeItsOps) {
  const std::string python = python_with_torch();
  if (python.empty()) GTEST_SKIP() << "no python3 with torch (apt-get install python3-torch)";
  const auto dir = fs::temp_directory_path() / ("recmod_quant_module_" + std::to_string(::getpid()));
  test::remove_tree(dir.string());
  fs::create_directories(dir);
  torch::manual_seed(9);
  std::vector<EmbeddingBagConfig> tables = {EmbeddingBagConfig(50, 16, "a", {"fa"}), EmbeddingBagConfig(60, 8, "b", {"fb"}),
                                            EmbeddingBagConfig(70, 32, "c", {"fc"})};
  FloatEBC ebc(tables, false);
  QuantConfig config;
  config.per_table_weight_dtype["b"] = torch::kQUInt4x2;
  config.per_table_weight_dtype["c"] = torch::kQUInt2x4;
  auto q = EmbeddingBagCollectionImpl::from_float(*ebc, config);
  q->eval();
  const int64_t batch = 6;
  const torch::Tensor lengths = torch::randint(0, 5, {3 * batch}, torch::kLong);
  const int64_t n = lengths.sum().item<int64_t>();
  const torch::Tensor values = torch::randint(0, 50, {n}, torch::kLong);
  const auto kjt = KeyedJaggedTensor::from_lengths({"fa", "fb", "fc"}, values, lengths);
  const KeyedTensor pooled = q->forward(kjt);
  StateDict out;
  for (const auto& [k, v] : state_dict(*q)) out.emplace_back("m." + k, v);
  const auto opk = kjt.offset_per_key();
  const torch::Tensor offsets = kjt.offsets();
  for (int64_t k = 0; k < 3; ++k) {
    const std::string name = tables[k].name;
    out.emplace_back("ids." + name, values.slice(0, opk[k], opk[k + 1]));
    out.emplace_back("offsets." + name, offsets.slice(0, k * batch, (k + 1) * batch + 1) - opk[k]);
    out.emplace_back("type." + name, torch::tensor(k));
  }
  io::save_tensors((dir / "q.pt").string(), out);
  const std::string command = python + " " RECMOD_SOURCE_DIR "/tests/quant/torch_quant_reference.py module " +
                              (dir / "q.pt").string() + " " + (dir / "ref.pt").string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const StateDict ref = io::load_tensors((dir / "ref.pt").string());
  for (const auto& t : tables) {
    const torch::Tensor* want = find_tensor(ref, "pooled." + t.name);
    ASSERT_NE(want, nullptr) << t.name;
    EXPECT_TRUE(torch::allclose(pooled[t.feature_names[0]], *want, 1e-5, 1e-6)) << t.name;
  }
  test::remove_tree(dir.string());
}

}  // namespace quant_embedding_modules_test
}  // namespace recmod::quant
