#pragma once
// Row-wise quantization of embedding tables for inference (FBGEMM's fused
// row-wise layouts, as torch.ops.quantized exposes them) and pooled lookups
// straight from the quantized rows.
//
// INT8 (torch.ops.quantized.embedding_bag_byte_prepack): per row of D
// floats, min m and max M; scale = (M - m) / 255, bias = m (fp32), and
//   q_j = lrintf((x_j - m) * 255 / (M - m + 1e-8)).
// INT4 / INT2 (embedding_bag_4bit_prepack / embedding_bag_2bit_prepack, b
// bits, L = 2^b - 1): bias = fp16(m), scale = fp16((M - bias) / L) (1 when
// M == bias, or when it rounds to 0 or its inverse overflows), and
//   q_j = clamp(lrintf((x_j - bias) * (1 / scale)), 0, L),
// packed 8/b to a byte, element j in bits [(j mod 8/b) * b, +b).
// A row is dequantized as x'_j = scale * q_j + bias.
//
// Fused row layout (what the torch ops produce and read), W bytes per row:
//   | codes: ceil(D * b / 8) bytes | scale | bias |
// with fp32 scale and bias for INT8 (W = D + 8) and fp16 for INT4 / INT2
// (W = ceil(D * b / 8) + 4). recmod produces the same bytes for the same
// fp32 table (tests/quant compare against Debian's python3-torch); the
// torch ops need D divisible by 8/b, recmod pads the last byte with zeros.
#include <torch/types.h>

#include <cstdint>
#include <optional>

#include "recmod/modules/embedding_configs.h"

namespace recmod::quant {

/// INT8, INT4 or INT2 (the types with a per-row scale and bias).
bool is_rowwise_quantized(DataType type);
/// Bits per code of a row-wise quantized type (8, 4, 2); throws InputError otherwise.
int64_t code_bits(DataType type);
/// Bytes of one row's codes: ceil(D * bits / 8).
int64_t code_bytes(DataType type, int64_t dim);
/// The dtype of a row's scale and bias: float32 for INT8, float16 for INT4 / INT2.
torch::Dtype scale_bias_dtype(DataType type);
/// W: bytes of one fused row (codes, scale, bias).
int64_t fused_row_bytes(DataType type, int64_t dim);

/// Quantizes a 2-D float32 (or float16) table (N, D) to fused rows
/// (N, fused_row_bytes) uint8, byte for byte what the torch op gives.
/// Throws InputError for another type or shape.
torch::Tensor quantize_rows(const torch::Tensor& weight, DataType type);

/// Where the rows of a quantized table are: codes of row r at
/// codes + r * code_stride, its scale at scale + r * scale_stride and its
/// bias at bias + r * bias_stride (byte offsets; fp32 for INT8, fp16
/// otherwise). The fused layout and the split state_dict layout both fit.
struct QuantizedRows {
  DataType type = DataType::INT8;
  int64_t num_rows = 0;
  int64_t dim = 0;
  const uint8_t* codes = nullptr;
  int64_t code_stride = 0;
  const uint8_t* scale = nullptr;
  int64_t scale_stride = 0;
  const uint8_t* bias = nullptr;
  int64_t bias_stride = 0;
};

/// The rows of a fused table (N, W) uint8 (contiguous) of `dim` columns.
QuantizedRows fused_rows(const torch::Tensor& fused, DataType type, int64_t dim);

/// Dequantizes every row: (N, D) float32, x'_j = scale * q_j + bias.
torch::Tensor dequantize_rows(const QuantizedRows& rows);
torch::Tensor dequantize_rows(const torch::Tensor& fused, DataType type, int64_t dim);

/// Pooled lookups of one quantized table, (B, D) float32: bag b holds
/// entries [offsets[b], offsets[b + 1]) (B + 1 offsets, the last = number of
/// ids), and out[b] = pool_{i in bag} w_i * (scale_r * q_r + bias_r) for
/// r = ids[i], accumulated in fp32 as out = fma(w*scale, q, out + w*bias)
/// (the torch ops' order). SUM or MEAN (divided by the bag length; an empty
/// bag gives zeros); w_i = per_sample_weights[i] (float32) when given.
/// ids and offsets int64 or int32. Throws InputError for an id outside
/// [0, N) or offsets that are not a non-decreasing run inside the ids.
torch::Tensor quantized_embedding_bag(const QuantizedRows& rows, const torch::Tensor& ids,
                                      const torch::Tensor& offsets,
                                      const std::optional<torch::Tensor>& per_sample_weights,
                                      PoolingType pooling);

/// One bag into `out` (D floats, overwritten): the inner loop of every
/// quantized lookup (also the multi-table one of the quantized
/// EmbeddingBagCollection). Rows of ids up to `prefetch_end` (the next bags
/// of the same table) are prefetched ahead. With AVX2+FMA and D in {8, 16,
/// 32, 64, 128} the bag's sum stays in registers; otherwise a plain loop.
/// Returns false (out unspecified) for an id outside the table.
template <typename index_t>
bool pool_quantized_bag(const QuantizedRows& rows, const index_t* ids, int64_t begin, int64_t end,
                        const float* per_sample_weights, bool mean, float* out, int64_t prefetch_end = 0);

/// Mean and max of |x - x'| over all elements of a table and its
/// dequantized rows (what `recmod quantize` reports).
struct RowError {
  double mean_abs = 0;
  double max_abs = 0;
};
RowError quantization_error(const torch::Tensor& weight, const QuantizedRows& rows);

}  // namespace recmod::quant
