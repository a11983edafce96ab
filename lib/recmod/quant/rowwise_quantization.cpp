#include "recmod/quant/rowwise_quantization.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "recmod/common/errors.h"

namespace recmod::quant {

namespace {

float read_float(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

float read_half(const uint8_t* p) {
  c10::Half h;
  std::memcpy(&h, p, sizeof h);
  return static_cast<float>(h);
}

void write_half(uint8_t* p, float v) {
  const c10::Half h(v);  // round to nearest even, as at::Half
  std::memcpy(p, &h, sizeof h);
}

/// The row's scale and bias as floats.
inline void scale_bias_of(const QuantizedRows& rows, int64_t r, float& scale, float& bias) {
  if (rows.type == DataType::INT8) {
    scale = read_float(rows.scale + r * rows.scale_stride);
    bias = read_float(rows.bias + r * rows.bias_stride);
  } else {
    scale = read_half(rows.scale + r * rows.scale_stride);
    bias = read_half(rows.bias + r * rows.bias_stride);
  }
}

// One bag, accumulated as the torch ops do: out = fma(w*scale, q, out + w*bias).
// Written so that the compiler vectorises the inner loops; compiled twice
// (below): for AVX2+FMA (fma is one instruction) and for the baseline ISA.
template <int kBits, typename index_t>
__attribute__((always_inline)) inline bool pool_bag_impl(const QuantizedRows& rows, const index_t* ids,
                                                          int64_t begin, int64_t end, const float* psw, bool mean,
                                                          float* __restrict out) {
  const int64_t d = rows.dim;
  for (int64_t j = 0; j < d; ++j) out[j] = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t r = static_cast<int64_t>(ids[i]);
    if (r < 0 || r >= rows.num_rows) return false;
    float scale, bias;
    scale_bias_of(rows, r, scale, bias);
    if (psw != nullptr) {
      scale *= psw[i];
      bias *= psw[i];
    }
    const uint8_t* __restrict q = rows.codes + r * rows.code_stride;
    if constexpr (kBits == 8) {
      for (int64_t j = 0; j < d; ++j) out[j] = std::fma(scale, static_cast<float>(q[j]), out[j] + bias);
    } else if constexpr (kBits == 4) {
      const int64_t pairs = d / 2;
      for (int64_t p = 0; p < pairs; ++p) {
        const uint8_t byte = q[p];
        out[2 * p] = std::fma(scale, static_cast<float>(byte & 15), out[2 * p] + bias);
        out[2 * p + 1] = std::fma(scale, static_cast<float>(byte >> 4), out[2 * p + 1] + bias);
      }
      if (d % 2) out[d - 1] = std::fma(scale, static_cast<float>(q[pairs] & 15), out[d - 1] + bias);
    } else {
      for (int64_t j = 0; j < d; ++j) {
        const int code = (q[j / 4] >> ((j % 4) * 2)) & 3;
        out[j] = std::fma(scale, static_cast<float>(code), out[j] + bias);
      }
    }
  }
  if (mean && end > begin) {
    const float inv = 1.0f / static_cast<float>(end - begin);
    for (int64_t j = 0; j < d; ++j) out[j] *= inv;
  }
  return true;
}

constexpr int64_t kPrefetchAhead = 16;  // rows in flight ahead of the one being added

/// Prefetches row ids[i] when i < prefetch_end and the id is in range.
/// (always_inline: called from the AVX2 kernels, a call to it would be
/// inlined late, after GCC's IPA has taken a function of only prefetches for
/// one without effects and dropped the calls.)
template <typename index_t>
__attribute__((always_inline)) inline void prefetch_row(const QuantizedRows& rows, const index_t* ids, int64_t i, int64_t prefetch_end) {
  if (i >= prefetch_end) return;
  const auto r = static_cast<int64_t>(ids[i]);
  if (r < 0 || r >= rows.num_rows) return;
  // Every cache line of the row's codes (a row may straddle a line): one
  // prefetch each 64 bytes and one of the last byte, a loop whose count
  // depends on the stride only. (A loop over the lines the row touches took
  // a branch that INT4's 36-byte rows, half of them straddling, mispredicted
  // every other row: INT4 ran at 0.55x INT8's rate with the rows in cache.)
  const uint8_t* first = rows.codes + r * rows.code_stride;
  for (int64_t offset = 0; offset < rows.code_stride; offset += 64) __builtin_prefetch(first + offset, 0, 3);
  __builtin_prefetch(first + rows.code_stride - 1, 0, 3);
  if (rows.scale_stride != rows.code_stride || rows.scale < rows.codes || rows.scale >= rows.codes + rows.code_stride)
    __builtin_prefetch(rows.scale + r * rows.scale_stride, 0, 3);
}

/// Codes 8v .. 8v+7 of a row as floats.
template <int kBits>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 codes8(const uint8_t* q, int64_t v) {
  if constexpr (kBits == 8) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * v));
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
  } else if constexpr (kBits == 4) {
    uint32_t word;
    std::memcpy(&word, q + 4 * v, sizeof word);
    const __m256i shifted = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)),
                                              _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    return _mm256_cvtepi32_ps(_mm256_and_si256(shifted, _mm256_set1_epi32(15)));
  } else {
    uint16_t word;
    std::memcpy(&word, q + 2 * v, sizeof word);
    const __m256i shifted = _mm256_srlv_epi32(_mm256_set1_epi32(word), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    return _mm256_cvtepi32_ps(_mm256_and_si256(shifted, _mm256_set1_epi32(3)));
  }
}

/// INT4 codes 16u .. 16u+15 of a row: the even ones (low nibbles) in `even`,
/// the odd ones (high nibbles) in `odd`, without variable shifts.
__attribute__((target("avx2,fma,f16c"), always_inline)) inline void nibbles16(const uint8_t* q, int64_t u, __m256& even,
                                                                             __m256& odd) {
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * u)));
  even = _mm256_cvtepi32_ps(_mm256_and_si256(bytes, _mm256_set1_epi32(15)));
  odd = _mm256_cvtepi32_ps(_mm256_srli_epi32(bytes, 4));
}

/// D = 8 * kVecs: the bag's sum held in kVecs AVX2 registers, rows
/// prefetched kPrefetchAhead ahead; per element exactly the torch ops'
/// fma(w*scale, q, acc + w*bias). INT4 with an even kVecs keeps the sums in
/// nibble order (acc[2u]: elements 16u + 0, 2, .., 14; acc[2u+1]: the odd
/// ones) and interleaves them once per bag: the same sums per element.
template <int kBits, int kVecs, typename index_t>
__attribute__((target("avx2,fma,f16c"))) bool pool_bag_avx2_fixed(const QuantizedRows& rows, const index_t* ids,
                                                             int64_t begin, int64_t end, int64_t prefetch_end,
                                                             const float* psw, bool mean, float* out) {
  constexpr bool kNibbleOrder = kBits == 4 && kVecs % 2 == 0;
  __m256 acc[kVecs];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t i = begin; i < end; ++i) {
    prefetch_row(rows, ids, i + kPrefetchAhead, prefetch_end);
    const int64_t r = static_cast<int64_t>(ids[i]);
    if (r < 0 || r >= rows.num_rows) return false;
    float scale, bias;
    if constexpr (kBits == 8) {
      scale = read_float(rows.scale + r * rows.scale_stride);
      bias = read_float(rows.bias + r * rows.bias_stride);
    } else {  // fp16 -> fp32 in one instruction (exact, as c10::Half's conversion)
      uint16_t s16, c16;
      std::memcpy(&s16, rows.scale + r * rows.scale_stride, sizeof s16);
      std::memcpy(&c16, rows.bias + r * rows.bias_stride, sizeof c16);
      scale = _cvtsh_ss(s16);
      bias = _cvtsh_ss(c16);
    }
    if (psw != nullptr) {
      scale *= psw[i];
      bias *= psw[i];
    }
    const __m256 s = _mm256_set1_ps(scale);
    const __m256 c = _mm256_set1_ps(bias);
    const uint8_t* q = rows.codes + r * rows.code_stride;
    if constexpr (kNibbleOrder) {
      for (int u = 0; u < kVecs / 2; ++u) {
        __m256 even, odd;
        nibbles16(q, u, even, odd);
        acc[2 * u] = _mm256_fmadd_ps(s, even, _mm256_add_ps(acc[2 * u], c));
        acc[2 * u + 1] = _mm256_fmadd_ps(s, odd, _mm256_add_ps(acc[2 * u + 1], c));
      }
    } else {
      for (int v = 0; v < kVecs; ++v) acc[v] = _mm256_fmadd_ps(s, codes8<kBits>(q, v), _mm256_add_ps(acc[v], c));
    }
  }
  if (mean && end > begin) {
    const __m256 inv = _mm256_set1_ps(1.0f / static_cast<float>(end - begin));
    for (auto& a : acc) a = _mm256_mul_ps(a, inv);
  }
  if constexpr (kNibbleOrder) {
    for (int u = 0; u < kVecs / 2; ++u) {
      // (0 2 4 6 | 8 10 12 14) and (1 3 5 7 | 9 11 13 15) -> 0..7 and 8..15
      const __m256 low = _mm256_unpacklo_ps(acc[2 * u], acc[2 * u + 1]);    // 0 1 2 3 | 8 9 10 11
      const __m256 high = _mm256_unpackhi_ps(acc[2 * u], acc[2 * u + 1]);   // 4 5 6 7 | 12 13 14 15
      _mm256_storeu_ps(out + 16 * u, _mm256_permute2f128_ps(low, high, 0x20));
      _mm256_storeu_ps(out + 16 * u + 8, _mm256_permute2f128_ps(low, high, 0x31));
    }
  } else {
    for (int v = 0; v < kVecs; ++v) _mm256_storeu_ps(out + 8 * v, acc[v]);
  }
  return true;
}

template <int kBits, typename index_t>
__attribute__((target("avx2,fma,f16c"))) bool pool_bag_avx2_bits(const QuantizedRows& rows, const index_t* ids,
                                                            int64_t begin, int64_t end, int64_t prefetch_end,
                                                            const float* psw, bool mean, float* out) {
  switch (rows.dim) {
    case 8: return pool_bag_avx2_fixed<kBits, 1>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    case 16: return pool_bag_avx2_fixed<kBits, 2>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    case 32: return pool_bag_avx2_fixed<kBits, 4>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    case 64: return pool_bag_avx2_fixed<kBits, 8>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    case 128: return pool_bag_avx2_fixed<kBits, 16>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    default: return pool_bag_impl<kBits>(rows, ids, begin, end, psw, mean, out);
  }
}

template <typename index_t>
__attribute__((target("avx2,fma,f16c"))) bool pool_bag_avx2(const QuantizedRows& rows, const index_t* ids, int64_t begin,
                                                        int64_t end, int64_t prefetch_end, const float* psw, bool mean,
                                                        float* out) {
  switch (rows.type) {
    case DataType::INT8: return pool_bag_avx2_bits<8>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    case DataType::INT4: return pool_bag_avx2_bits<4>(rows, ids, begin, end, prefetch_end, psw, mean, out);
    default: return pool_bag_avx2_bits<2>(rows, ids, begin, end, prefetch_end, psw, mean, out);
  }
}

template <typename index_t>
bool pool_bag_baseline(const QuantizedRows& rows, const index_t* ids, int64_t begin, int64_t end, const float* psw,
                       bool mean, float* out) {
  switch (rows.type) {
    case DataType::INT8: return pool_bag_impl<8>(rows, ids, begin, end, psw, mean, out);
    case DataType::INT4: return pool_bag_impl<4>(rows, ids, begin, end, psw, mean, out);
    default: return pool_bag_impl<2>(rows, ids, begin, end, psw, mean, out);
  }
}

bool cpu_has_avx2_fma() {
  static const bool has =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return has;
}

void check_quantized_type(DataType type) {
  if (!is_rowwise_quantized(type))
    throw_input_error("row-wise quantization: expected INT8, INT4 or INT2, got ", to_string(type));
}

}  // namespace

bool is_rowwise_quantized(DataType type) {
  return type == DataType::INT8 || type == DataType::INT4 || type == DataType::INT2;
}

int64_t code_bits(DataType type) {
  check_quantized_type(type);
  return type == DataType::INT8 ? 8 : type == DataType::INT4 ? 4 : 2;
}

int64_t code_bytes(DataType type, int64_t dim) { return (dim * code_bits(type) + 7) / 8; }

torch::Dtype scale_bias_dtype(DataType type) {
  check_quantized_type(type);
  return type == DataType::INT8 ? torch::kFloat : torch::kHalf;
}

int64_t fused_row_bytes(DataType type, int64_t dim) {
  return code_bytes(type, dim) + (type == DataType::INT8 ? 8 : 4);
}

torch::Tensor quantize_rows(const torch::Tensor& weight, DataType type) {
  check_quantized_type(type);
  if (weight.dim() != 2 || (weight.scalar_type() != torch::kFloat && weight.scalar_type() != torch::kHalf))
    throw_input_error("quantize_rows: expected a 2-D float32 or float16 table, got ", weight.scalar_type(), " ",
                      weight.sizes());
  const torch::Tensor w = weight.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t n = w.size(0);
  const int64_t d = w.size(1);
  const int64_t width = fused_row_bytes(type, d);
  const int64_t codes = code_bytes(type, d);
  torch::Tensor out = torch::zeros({n, width}, torch::kUInt8);
  const float* in = w.data_ptr<float>();
  uint8_t* o = out.data_ptr<uint8_t>();
  const int bits = static_cast<int>(code_bits(type));
  at::parallel_for(0, n, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = in + r * d;
      uint8_t* row = o + r * width;
      if (d == 0) continue;
      const float mn = *std::min_element(x, x + d);
      const float mx = *std::max_element(x, x + d);
      if (bits == 8) {
        const float range = mx - mn;
        const float scale = range / 255.0f;
        const float inverse = 255.0f / (range + 1e-8f);
        std::memcpy(row + codes, &scale, sizeof scale);
        std::memcpy(row + codes + 4, &mn, sizeof mn);
        for (int64_t j = 0; j < d; ++j) row[j] = static_cast<uint8_t>(std::lrintf((x[j] - mn) * inverse));
        continue;
      }
      const int levels = (1 << bits) - 1;
      const float bias = static_cast<float>(c10::Half(mn));
      const float range = mx - bias;
      float scale = static_cast<float>(c10::Half(range == 0 ? 1.0f : range / static_cast<float>(levels)));
      float inverse = scale == 0 ? 1.0f : 1.0f / scale;
      if (scale == 0 || std::isinf(inverse)) {
        scale = 1.0f;
        inverse = 1.0f;
      }
      write_half(row + codes, scale);
      write_half(row + codes + 2, bias);
      const int per_byte = 8 / bits;
      for (int64_t j = 0; j < d; ++j) {
        const long q = std::clamp<long>(std::lrintf((x[j] - bias) * inverse), 0, levels);
        row[j / per_byte] |= static_cast<uint8_t>(q << ((j % per_byte) * bits));
      }
    }
  });
  return out;
}

QuantizedRows fused_rows(const torch::Tensor& fused, DataType type, int64_t dim) {
  check_quantized_type(type);
  const int64_t width = fused_row_bytes(type, dim);
  if (fused.dim() != 2 || fused.scalar_type() != torch::kUInt8 || fused.size(1) != width || !fused.is_contiguous() ||
      !fused.is_cpu())
    throw_input_error("fused ", to_string(type), " rows of dimension ", dim, ": expected a contiguous CPU uint8 (N, ",
                      width, ") tensor, got ", fused.scalar_type(), " ", fused.sizes());
  QuantizedRows rows;
  rows.type = type;
  rows.num_rows = fused.size(0);
  rows.dim = dim;
  rows.codes = fused.data_ptr<uint8_t>();
  rows.code_stride = width;
  const int64_t codes = code_bytes(type, dim);
  const int64_t sb = type == DataType::INT8 ? 4 : 2;
  rows.scale = rows.codes + codes;
  rows.bias = rows.codes + codes + sb;
  rows.scale_stride = rows.bias_stride = width;
  return rows;
}

torch::Tensor dequantize_rows(const QuantizedRows& rows) {
  torch::Tensor out = torch::empty({rows.num_rows, rows.dim}, torch::kFloat);
  float* o = out.data_ptr<float>();
  const int bits = static_cast<int>(code_bits(rows.type));
  const int per_byte = 8 / bits;
  const int mask = (1 << bits) - 1;
  at::parallel_for(0, rows.num_rows, 1024, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float scale, bias;
      scale_bias_of(rows, r, scale, bias);
      const uint8_t* q = rows.codes + r * rows.code_stride;
      for (int64_t j = 0; j < rows.dim; ++j) {
        const int code = (q[j / per_byte] >> ((j % per_byte) * bits)) & mask;
        o[r * rows.dim + j] = scale * static_cast<float>(code) + bias;
      }
    }
  });
  return out;
}

torch::Tensor dequantize_rows(const torch::Tensor& fused, DataType type, int64_t dim) {
  return dequantize_rows(fused_rows(fused, type, dim));
}

template <typename index_t>
bool pool_quantized_bag(const QuantizedRows& rows, const index_t* ids, int64_t begin, int64_t end,
                        const float* per_sample_weights, bool mean, float* out, int64_t prefetch_end) {
  if (cpu_has_avx2_fma())
    return pool_bag_avx2<index_t>(rows, ids, begin, end, std::max(prefetch_end, end), per_sample_weights, mean, out);
  return pool_bag_baseline<index_t>(rows, ids, begin, end, per_sample_weights, mean, out);
}
template bool pool_quantized_bag<int64_t>(const QuantizedRows&, const int64_t*, int64_t, int64_t, const float*, bool,
                                          float*, int64_t);
template bool pool_quantized_bag<int32_t>(const QuantizedRows&, const int32_t*, int64_t, int64_t, const float*, bool,
                                          float*, int64_t);

namespace {

template <typename index_t>
torch::Tensor embedding_bag_impl(const QuantizedRows& rows, const torch::Tensor& ids, const torch::Tensor& offsets,
                                 const float* psw, bool mean) {
  const int64_t bags = offsets.numel() - 1;
  torch::Tensor out = torch::empty({bags, rows.dim}, torch::kFloat);
  const index_t* id = ids.data_ptr<index_t>();
  const int64_t* off = offsets.data_ptr<int64_t>();
  float* o = out.data_ptr<float>();
  std::atomic<int64_t> bad{-1};
  at::parallel_for(0, bags, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      if (!pool_quantized_bag<index_t>(rows, id, off[b], off[b + 1], psw, mean, o + b * rows.dim, off[b1])) {
        int64_t expected = -1;
        bad.compare_exchange_strong(expected, b);
        return;
      }
  });
  if (bad.load() >= 0) {
    const int64_t b = bad.load();
    for (int64_t i = off[b]; i < off[b + 1]; ++i) {
      const auto r = static_cast<int64_t>(id[i]);
      if (r < 0 || r >= rows.num_rows)
        throw_input_error("quantized embedding bag: id ", r, " (bag ", b, ") is outside the table's ", rows.num_rows,
                          " rows");
    }
  }
  return out;
}

}  // namespace

torch::Tensor quantized_embedding_bag(const QuantizedRows& rows, const torch::Tensor& ids,
                                      const torch::Tensor& offsets,
                                      const std::optional<torch::Tensor>& per_sample_weights,
                                      PoolingType pooling) {
  if (pooling == PoolingType::NONE) throw_input_error("quantized embedding bag: pooling NONE is not a bag");
  if (ids.dim() != 1 || (ids.scalar_type() != torch::kLong && ids.scalar_type() != torch::kInt))
    throw_input_error("quantized embedding bag: expected 1-D int64 or int32 ids, got ", ids.scalar_type(), " ",
                      ids.sizes());
  if (offsets.dim() != 1 || offsets.numel() < 1)
    throw_input_error("quantized embedding bag: expected 1-D offsets with the number of ids last, got ",
                      offsets.sizes());
  const torch::Tensor id = ids.to(torch::kCPU).contiguous();
  const torch::Tensor off = offsets.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* o = off.data_ptr<int64_t>();
  if (o[0] != 0 || o[off.numel() - 1] != id.numel())
    throw_input_error("quantized embedding bag: offsets must run from 0 to the number of ids (", id.numel(),
                      "), got ", o[0], " .. ", o[off.numel() - 1]);
  for (int64_t b = 1; b < off.numel(); ++b)
    if (o[b] < o[b - 1]) throw_input_error("quantized embedding bag: offsets decrease at ", b);
  torch::Tensor w;
  if (per_sample_weights.has_value() && per_sample_weights->defined()) {
    w = per_sample_weights->to(torch::kCPU, torch::kFloat).contiguous();
    if (w.numel() != id.numel())
      throw_input_error("quantized embedding bag: ", w.numel(), " per-sample weights for ", id.numel(), " ids");
  }
  const float* psw = w.defined() ? w.data_ptr<float>() : nullptr;
  const bool mean = pooling == PoolingType::MEAN;
  if (id.scalar_type() == torch::kLong) return embedding_bag_impl<int64_t>(rows, id, off, psw, mean);
  return embedding_bag_impl<int32_t>(rows, id, off, psw, mean);
}

RowError quantization_error(const torch::Tensor& weight, const QuantizedRows& rows) {
  RowError e;
  if (weight.numel() == 0) return e;
  // Chunks of rows, so that a large table is never dequantized whole.
  const torch::Tensor w = weight.to(torch::kCPU, torch::kFloat);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, rows.dim));
  double sum = 0;
  for (int64_t r0 = 0; r0 < rows.num_rows; r0 += chunk) {
    QuantizedRows part = rows;
    const int64_t n = std::min(chunk, rows.num_rows - r0);
    part.num_rows = n;
    part.codes += r0 * rows.code_stride;
    part.scale += r0 * rows.scale_stride;
    part.bias += r0 * rows.bias_stride;
    const torch::Tensor diff = (w.slice(0, r0, r0 + n).to(torch::kDouble) - dequantize_rows(part).to(torch::kDouble)).abs();
    sum += diff.sum().item<double>();
    e.max_abs = std::max(e.max_abs, diff.max().item<double>());
  }
  e.mean_abs = sum / static_cast<double>(weight.numel());
  return e;
}

}  // namespace recmod::quant
