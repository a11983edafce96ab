#include "recmod/quant/rowwise_quantization.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <c10/util/Half.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "recmod/common/errors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/quant/quant_config.h"
#include "support/test_util.h"

namespace recmod::quant {
namespace rowwise_quantization_test {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

/// The python3 that can import torch: $RECMOD_PYTHON, else python3, else Debian's /usr/bin/python3.
std::string python_with_torch() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RECMOD_PYTHON")) candidates.emplace_back(env);
  candidates.insert(candidates.end(), {"python3", "/usr/bin/python3"});
  for (const auto& python : candidates)
    if (std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) return python;
  return "";
}

std::string temp_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("recmod_quant_" + name + "_" + std::to_string(::getpid()));
  test::remove_tree(dir.string());
  fs::create_directories(dir);
  return dir.string();
}

/// Tables with the rows that exercise the corner cases: random normal rows,
/// a constant row (range 0), a row with a tiny range, large magnitudes,
/// one all-zero row.
StateDict reference_tables() {
  torch::manual_seed(7);
  StateDict tables;
  for (int64_t d : {8, 16, 64}) {
    torch::Tensor w = torch::randn({40, d});
    w[1].fill_(0.25);
    w[2] = 1e-3 + 1e-9 * torch::arange(d, torch::kFloat);
    w[3] *= 1000;
    w[4].zero_();
    w[5] = torch::rand({d}) * 1e-5;
    tables.emplace_back("table.d" + std::to_string(d), w);
  }
  return tables;
}

DataType type_of(const std::string& t) {
  return t == "int8" ? DataType::INT8 : t == "int4" ? DataType::INT4 : DataType::INT2;
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  // 1e-5 relative to the larger of the value and the row's scale of values.
  const torch::Tensor tol = 1e-5 * torch::maximum(want.abs(), torch::ones_like(want) * want.abs().max().clamp_min(1e-6) * 1e-2);
  const torch::Tensor excess = (got - want).abs() - tol;
  EXPECT_LE(excess.max().item<float>(), 0.0f) << what << ": max |diff| " << (got - want).abs().max().item<float>();
}

TEST(QuantRowwise, WidthsAndScaleBiasTypes) {
  EXPECT_EQ(fused_row_bytes(DataType::INT8, 16), 24);
  EXPECT_EQ(fused_row_bytes(DataType::INT4, 16), 12);
  EXPECT_EQ(fused_row_bytes(DataType::INT2, 16), 8);
  EXPECT_EQ(code_bytes(DataType::INT4, 5), 3);
  EXPECT_EQ(code_bytes(DataType::INT2, 5), 2);
  EXPECT_EQ(scale_bias_dtype(DataType::INT8), torch::kFloat);
  EXPECT_EQ(scale_bias_dtype(DataType::INT2), torch::kHalf);
  EXPECT_THAT(test::error_of<InputError>([] { code_bits(DataType::FP16); }), HasSubstr("expected INT8, INT4 or INT2"));
}

TEST(QuantRowwise, DequantizedRowsAreWithinHalfAStepOfTheTable) {
  torch::manual_seed(3);
  const torch::Tensor w = torch::randn({64, 13});  // odd D: INT4 / INT2 pad the last byte
  for (DataType type : {DataType::INT8, DataType::INT4, DataType::INT2}) {
    const torch::Tensor fused = quantize_rows(w, type);
    ASSERT_EQ(fused.size(1), fused_row_bytes(type, 13));
    const torch::Tensor back = dequantize_rows(fused, type, 13);
    const double levels = static_cast<double>((1 << code_bits(type)) - 1);
    const torch::Tensor step = (std::get<0>(w.max(1)) - std::get<0>(w.min(1))) / levels;
    // Half a step, plus the fp16 rounding of scale and bias for INT4 / INT2.
    const torch::Tensor bound = step.unsqueeze(1) * (type == DataType::INT8 ? 0.5001 : 0.52) + 1e-3 * w.abs().max();
    EXPECT_TRUE(((w - back).abs() <= bound).all().item<bool>()) << to_string(type);
    const RowError e = quantization_error(w, fused_rows(fused, type, 13));
    EXPECT_GT(e.max_abs, 0.0);
    EXPECT_LE(e.mean_abs, e.max_abs);
    EXPECT_NEAR(e.max_abs, (w - back).abs().max().item<double>(), 1e-7);
  }
}

TEST(QuantRowwise, PoolsSumMeanAndWeightedBagsFromDequantizedRows) {
  torch::manual_seed(5);
  const torch::Tensor w = torch::randn({30, 12});
  const torch::Tensor ids = torch::randint(0, 30, {40}, torch::kLong);
  const torch::Tensor offsets = torch::tensor({0, 3, 3, 10, 25, 40}, torch::kLong);  // an empty bag
  const torch::Tensor psw = torch::rand({40});
  for (DataType type : {DataType::INT8, DataType::INT4, DataType::INT2}) {
    const torch::Tensor fused = quantize_rows(w, type);
    const QuantizedRows rows = fused_rows(fused, type, 12);
    const torch::Tensor deq = dequantize_rows(rows);
    for (PoolingType pooling : {PoolingType::SUM, PoolingType::MEAN})
      for (bool weighted : {false, true}) {
        if (weighted && pooling == PoolingType::MEAN) continue;  // torch's embedding_bag: weights with SUM only
        const torch::Tensor got =
            quantized_embedding_bag(rows, ids.to(weighted ? torch::kInt : torch::kLong), offsets,
                                    weighted ? std::optional<torch::Tensor>(psw) : std::nullopt, pooling);
        const auto want = std::get<0>(torch::embedding_bag(deq, ids, offsets, false, pooling == PoolingType::MEAN,
                                                           false, weighted ? psw : torch::Tensor(), true));
        expect_close(got, want, to_string(type) + (weighted ? " weighted " : " ") + to_string(pooling));
      }
  }
}

/// The pooled bags as the kernels define them, one element at a time: per
/// id in order acc = fma(w*scale, q, acc + w*bias), MEAN times 1/n.
torch::Tensor pooled_by_hand(const torch::Tensor& fused, DataType type, int64_t d, const torch::Tensor& ids,
                             const torch::Tensor& offsets, const float* psw, bool mean) {
  const int64_t bits = code_bits(type);
  const int64_t codes = code_bytes(type, d);
  const int64_t width = fused.size(1);
  const uint8_t* base = fused.data_ptr<uint8_t>();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t* off = offsets.data_ptr<int64_t>();
  torch::Tensor out = torch::zeros({offsets.numel() - 1, d});
  float* o = out.data_ptr<float>();
  for (int64_t b = 0; b + 1 < offsets.numel(); ++b) {
    for (int64_t i = off[b]; i < off[b + 1]; ++i) {
      const uint8_t* row = base + id[i] * width;
      float scale, bias;
      if (type == DataType::INT8) {
        std::memcpy(&scale, row + codes, 4);
        std::memcpy(&bias, row + codes + 4, 4);
      } else {
        c10::Half s, c;
        std::memcpy(&s, row + codes, 2);
        std::memcpy(&c, row + codes + 2, 2);
        scale = static_cast<float>(s);
        bias = static_cast<float>(c);
      }
      if (psw != nullptr) {
        scale *= psw[i];
        bias *= psw[i];
      }
      for (int64_t j = 0; j < d; ++j) {
        const int64_t bit = j * bits;
        const int q = (row[bit / 8] >> (bit % 8)) & ((1 << bits) - 1);
        o[b * d + j] = std::fma(scale, static_cast<float>(q), o[b * d + j] + bias);
      }
    }
    if (mean && off[b + 1] > off[b]) {
      const float inv = 1.0f / static_cast<float>(off[b + 1] - off[b]);
      for (int64_t j = 0; j < d; ++j) o[b * d + j] *= inv;
    }
  }
  return out;
}

// The vectorised kernels (D = 8 .. 128; INT4 sums its nibbles in their own
// order and interleaves at the end) give exactly the per-element sums.
TEST(QuantRowwise, PooledBagsAreBitIdenticalToThePerElementSums) {
  torch::manual_seed(11);
  const torch::Tensor ids = torch::randint(0, 50, {300}, torch::kLong);
  const torch::Tensor offsets = torch::tensor({0, 1, 1, 20, 57, 140, 300}, torch::kLong);  // an empty bag
  const torch::Tensor psw = torch::rand({300}) * 3 - 1;
  for (int64_t d : {8, 16, 32, 64, 128, 12})
    for (DataType type : {DataType::INT8, DataType::INT4, DataType::INT2}) {
      const torch::Tensor fused = quantize_rows(torch::randn({50, d}) * 4, type);
      const QuantizedRows rows = fused_rows(fused, type, d);
      for (int mode = 0; mode < 3; ++mode) {  // SUM, MEAN, weighted SUM
        const bool weighted = mode == 2;
        const PoolingType pooling = mode == 1 ? PoolingType::MEAN : PoolingType::SUM;
        const torch::Tensor got = quantized_embedding_bag(
            rows, ids, offsets, weighted ? std::optional<torch::Tensor>(psw) : std::nullopt, pooling);
        const torch::Tensor want =
            pooled_by_hand(fused, type, d, ids, offsets, weighted ? psw.data_ptr<float>() : nullptr, mode == 1);
        EXPECT_TRUE(torch::equal(got, want)) << to_string(type) << " D " << d << " mode " << mode
                                             << ": max |diff| " << (got - want).abs().max().item<float>();
      }
    }
}

TEST(QuantRowwise, BadIdsAndOffsetsAreInputErrors) {
  const torch::Tensor fused = quantize_rows(torch::randn({5, 8}), DataType::INT8);
  const QuantizedRows rows = fused_rows(fused, DataType::INT8, 8);
  EXPECT_THAT(test::error_of<InputError>([&] {
                quantized_embedding_bag(rows, torch::tensor({1, 5}, torch::kLong), torch::tensor({0, 1, 2}),
                                        std::nullopt, PoolingType::SUM);
              }),
              HasSubstr("id 5 (bag 1) is outside the table's 5 rows"));
  EXPECT_THAT(test::error_of<InputError>([&] {
                quantized_embedding_bag(rows, torch::tensor({1, 2}, torch::kLong), torch::tensor({0, 1}),
                                        std::nullopt, PoolingType::SUM);
              }),
              HasSubstr("offsets must run from 0 to the number of ids (2)"));
  EXPECT_THAT(test::error_of<InputError>([&] { fused_rows(fused, DataType::INT4, 8); }),
              HasSubstr("expected a contiguous CPU uint8 (N, 8) tensor"));
}

TEST(QuantRowwise, SameBytesAndPooledValuesAsTorchQuantizedOps) {
  const std::string python = python_with_torch();
  if (python.empty()) GTEST_SKIP() << "no python3 with torch (apt-get install python3-torch)";
  const std::string dir = temp_dir("ops");
  StateDict input = reference_tables();
  torch::manual_seed(11);
  const torch::Tensor ids = torch::randint(0, 40, {120}, torch::kLong);
  const torch::Tensor offsets = torch::tensor({0, 1, 1, 9, 40, 41, 80, 120}, torch::kLong);
  const torch::Tensor psw = torch::rand({120}) * 2 - 0.5;
  input.emplace_back("ids", ids);
  input.emplace_back("offsets", offsets);
  input.emplace_back("psw", psw);
  io::save_tensors(dir + "/in.pt", input);
  const std::string command = python + " " RECMOD_SOURCE_DIR "/tests/quant/torch_quant_reference.py prepack " + dir +
                              "/in.pt " + dir + "/out.pt";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const StateDict ref = io::load_tensors(dir + "/out.pt");
  int compared = 0;
  for (const auto& [key, w] : reference_tables()) {
    const std::string name = key.substr(std::string("table.").size());
    const int64_t d = w.size(1);
    for (const std::string t : {"int8", "int4", "int2"}) {
      const DataType type = type_of(t);
      const torch::Tensor mine = quantize_rows(w, type);
      const torch::Tensor* theirs = find_tensor(ref, t + "." + name);
      ASSERT_NE(theirs, nullptr) << t << "." << name;
      EXPECT_TRUE(torch::equal(mine, *theirs)) << t << "." << name << ": rows differ from torch's prepack";
      // Pooled lookups on torch's bytes (so a byte difference does not hide here).
      const QuantizedRows rows = fused_rows(theirs->contiguous(), type, d);
      const torch::Tensor sum = quantized_embedding_bag(rows, ids, offsets, std::nullopt, PoolingType::SUM);
      expect_close(sum, *find_tensor(ref, "sum." + t + "." + name), "sum." + t + "." + name);
      const torch::Tensor weighted = quantized_embedding_bag(rows, ids, offsets, psw, PoolingType::SUM);
      expect_close(weighted, *find_tensor(ref, "weighted." + t + "." + name), "weighted." + t + "." + name);
      // torch 1.13's CPU ops ignore `mode` (always SUM): MEAN is their SUM over the bag length.
      const torch::Tensor mean = quantized_embedding_bag(rows, ids, offsets, std::nullopt, PoolingType::MEAN);
      const torch::Tensor lengths = (offsets.slice(0, 1) - offsets.slice(0, 0, -1)).clamp_min(1).to(torch::kFloat);
      expect_close(mean, *find_tensor(ref, "sum." + t + "." + name) / lengths.unsqueeze(1), "mean." + t + "." + name);
      ++compared;
    }
  }
  EXPECT_EQ(compared, 9);
  test::remove_tree(dir);
}

TEST(QuantConfigTest, DataTypesOfTablesAndSparseTypes) {
  QuantConfig config;
  config.per_table_weight_dtype["t2"] = torch::kQUInt4x2;
  config.per_table_weight_dtype["t3"] = torch::kHalf;
  EXPECT_EQ(config.data_type_of("t1"), DataType::INT8);
  EXPECT_EQ(config.data_type_of("t2"), DataType::INT4);
  EXPECT_EQ(config.data_type_of("t3"), DataType::FP16);
  config.weight = torch::kQUInt8;  // TorchRec's UINT8: INT8 rows
  EXPECT_EQ(config.data_type_of("t1"), DataType::INT8);
  EXPECT_NO_THROW(config.validate());
  EXPECT_EQ(data_type_to_sparse_type(DataType::INT2), SparseType::INT2);
  EXPECT_EQ(data_type_to_sparse_type(DataType::UINT8), SparseType::INT8);
  EXPECT_EQ(to_string(data_type_to_sparse_type(DataType::BF16)), "bf16");
  EXPECT_THAT(test::error_of<InputError>([] { data_type_to_sparse_type(DataType::INT64); }),
              HasSubstr("data type INT64 has no SparseType"));
  config.per_table_weight_dtype["t4"] = torch::kInt64;
  EXPECT_THAT(test::error_of<InputError>([&] { config.validate(); }), HasSubstr("table 't4's weight dtype"));
  EXPECT_EQ(quantized_data_type_from_string("INT4"), DataType::INT4);
  EXPECT_THAT(test::error_of<InputError>([] { quantized_data_type_from_string("int3"); }),
              HasSubstr("valid: int8, int4, int2, fp16, fp32"));
}

}  // namespace rowwise_quantization_test
}  // namespace recmod::quant
