#include "recmod/modules/embedding_configs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include <cmath>

#include "recmod/common/errors.h"

namespace recmod {
namespace embedding_configs_test {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::HasSubstr;

TEST(EmbeddingConfigs, PoolingConversions) {
  EXPECT_EQ(pooling_type_to_str(PoolingType::SUM), "sum");
  EXPECT_EQ(pooling_type_to_str(PoolingType::MEAN), "mean");
  EXPECT_THAT(error_of([] { pooling_type_to_str(PoolingType::NONE); }), HasSubstr("Unsupported pooling type NONE"));
  EXPECT_EQ(pooling_type_to_embedding_bag_mode(PoolingType::SUM), 0);
  EXPECT_EQ(pooling_type_to_embedding_bag_mode(PoolingType::MEAN), 1);
  EXPECT_EQ(pooling_type_to_pooling_mode(PoolingType::MEAN), PoolingMode::MEAN);
  EXPECT_EQ(pooling_type_to_pooling_mode(PoolingType::NONE), PoolingMode::NONE);
  for (auto p : {PoolingType::SUM, PoolingType::MEAN, PoolingType::NONE})
    EXPECT_EQ(pooling_type_from_string(to_string(p)), p);
  EXPECT_THAT(error_of([] { pooling_type_from_string("MAX"); }),
              HasSubstr("unknown pooling type 'MAX'; valid: [SUM, MEAN, NONE]"));
}

TEST(EmbeddingConfigs, DataTypeConversions) {
  EXPECT_EQ(data_type_to_dtype(DataType::FP16), torch::kFloat16);
  EXPECT_EQ(data_type_to_dtype(DataType::INT4), torch::kQUInt4x2);
  EXPECT_EQ(dtype_to_data_type(torch::kBFloat16), DataType::BF16);
  EXPECT_EQ(dtype_to_data_type(torch::kQUInt2x4), DataType::INT2);
  // As TorchRec: quint8 and qint8 are INT8 (only uint8 is UINT8).
  EXPECT_EQ(dtype_to_data_type(torch::kQUInt8), DataType::INT8);
  EXPECT_EQ(dtype_to_data_type(torch::kQInt8), DataType::INT8);
  EXPECT_EQ(dtype_to_data_type(torch::kUInt8), DataType::UINT8);
  for (auto d : {DataType::FP32, DataType::FP16, DataType::BF16, DataType::INT8, DataType::UINT8, DataType::INT4,
                 DataType::INT2}) {
    EXPECT_EQ(dtype_to_data_type(data_type_to_dtype(d)), d) << to_string(d);
    EXPECT_EQ(data_type_from_string(to_string(d)), d);
  }
  EXPECT_THAT(error_of([] { dtype_to_data_type(torch::kBool); }), HasSubstr("has no DataType counterpart"));
  EXPECT_EQ(data_type_num_bits(DataType::INT4), 4);
  EXPECT_EQ(data_type_num_bits(DataType::BF16), 16);
  EXPECT_EQ(weight_storage_dtype(DataType::FP32), torch::kFloat32);
  EXPECT_EQ(weight_storage_dtype(DataType::FP16), torch::kFloat16);
  EXPECT_EQ(weight_storage_dtype(DataType::BF16), torch::kBFloat16);
  EXPECT_EQ(weight_storage_dtype(DataType::INT8), torch::kFloat32);  // trained in float32, quantized for inference
  EXPECT_EQ(weight_storage_dtype(DataType::INT4), torch::kFloat32);
}

TEST(EmbeddingConfigs, InitBoundsDefaultToInverseSqrtRows) {
  EmbeddingBagConfig c(16, 4, "t");
  EXPECT_DOUBLE_EQ(c.get_weight_init_max(), 0.25);
  EXPECT_DOUBLE_EQ(c.get_weight_init_min(), -0.25);
  c.weight_init_min = -1.0;
  EXPECT_DOUBLE_EQ(c.get_weight_init_min(), -1.0);
  EXPECT_EQ(c.pooling, PoolingType::SUM);
  EXPECT_EQ(c.data_type, DataType::FP32);
  EXPECT_EQ(c.num_features(), 0);
}

TEST(EmbeddingConfigs, Validation) {
  EXPECT_THAT(error_of([] { EmbeddingConfig(3, 0, "t").validate("EC"); }),
              HasSubstr("EC: table 't' needs embedding_dim > 0, got 0"));
  EXPECT_THAT(error_of([] { EmbeddingConfig(3, 2, "").validate("EC"); }), HasSubstr("non-empty name"));
  EXPECT_THAT(error_of([] { EmbeddingConfig(3, 2, "a.b").validate("EC"); }), HasSubstr("must not contain '.'"));
}

}  // namespace embedding_configs_test
}  // namespace recmod
