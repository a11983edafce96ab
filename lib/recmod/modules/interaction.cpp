#include "recmod/modules/interaction.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "recmod/common/check.h"

namespace recmod {

namespace {

/// Row i of example b: the dense vector for i = 0, else sparse embedding i - 1.
struct Rows {
  const float* dense;
  const float* sparse;
  int64_t f, d;
  const float* row(int64_t b, int64_t i) const { return i == 0 ? dense + b * d : sparse + (b * f + i - 1) * d; }
};

/// Rows of the gram computed together (forward) and gradient rows summed
/// together (backward): enough independent FMA chains to hide the FMA
/// latency (4 cycles, 2 a cycle) with d = 16.
constexpr int64_t kRows = 4;
constexpr int64_t kGradRows = 8;

/// The n dimension of X^T is padded to two vectors of the widest build (32
/// floats), so that every build reads whole vectors of it.
constexpr int64_t kPad = 32;
int64_t padded(int64_t n) {
  return (n + kPad - 1) / kPad * kPad;
}

/// Examples per parallel task: at least 2 Mi multiply-adds of the gram
/// (n x padded n x d per example; 151 examples of DLRM's 27 x 16), some
/// 150 us of forward on one core. Smaller tasks did not pay on a 2-vCPU VM:
/// at batch 128 (64 examples, ~85 us of forward + backward per thread) two
/// threads were no faster than one (dlrm_bench BM_DotInteraction 0.17-0.19
/// vs 0.167 ms), at 2048 they are 1.65x.
int64_t grain(int64_t n, int64_t d) {
  constexpr int64_t kMinTaskFmas = int64_t{1} << 21;
  return std::max<int64_t>(1, kMinTaskFmas / std::max<int64_t>(n * padded(n) * d, 1));
}

/// Vectors of 8 floats (AVX2, or two SSE registers in the baseline build)
/// and of 16 (AVX-512), as GCC vector extensions. Unaligned access goes
/// through the aligned(4) alias types; no function takes or returns a
/// vector (that would change the ABI between the builds).
typedef float Lanes8 __attribute__((vector_size(8 * sizeof(float))));
typedef float Unaligned8 __attribute__((vector_size(8 * sizeof(float)), aligned(4), may_alias));
typedef float Lanes16 __attribute__((vector_size(16 * sizeof(float))));
typedef float Unaligned16 __attribute__((vector_size(16 * sizeof(float)), aligned(4), may_alias));

template <typename V>
struct VectorOf;
template <>
struct VectorOf<Lanes8> {
  using Unaligned = Unaligned8;
};
template <>
struct VectorOf<Lanes16> {
  using Unaligned = Unaligned16;
};

#define RECMOD_LOAD(p) (*reinterpret_cast<const typename VectorOf<V>::Unaligned*>(p))
#define RECMOD_STORE(p, v) (*reinterpret_cast<typename VectorOf<V>::Unaligned*>(p) = (v))

/// Per-thread scratch of one example: its n rows transposed (d x np), the
/// gram rows of one row group (kRows x np), and the row starts of the
/// packed pair gradients. Reused across examples and steps.
struct Scratch {
  std::vector<float> xt, gram, zeros;
  std::vector<int64_t> start;
  std::vector<const float*> rows;  // the example's n rows, then padding rows (zeros) up to the padded n
  void fit(int64_t n, int64_t d) {
    const int64_t np = padded(n);
    if (static_cast<int64_t>(rows.size()) < np) rows.resize(np);
    if (static_cast<int64_t>(zeros.size()) < d) zeros.assign(d, 0.f);
    std::fill(rows.begin() + n, rows.begin() + np, zeros.data());  // padding rows of X^T read as zeros
    if (static_cast<int64_t>(xt.size()) < d * np) xt.assign(d * np, 0.f);
    if (static_cast<int64_t>(gram.size()) < kRows * np + kPad) gram.assign(kRows * np + kPad, 0.f);
    if (static_cast<int64_t>(start.size()) < n) start.resize(n);
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

/// out[0, count) = in[0, count), in whole vectors where the output row has
/// room for the last vector's overshoot (the next values written overwrite
/// it), element by element where it has not; `in` must be readable for the
/// whole vectors. Avoids a memcpy call per gram row (14 % of the
/// interaction's samples in the profile).
template <typename V>
__attribute__((always_inline)) inline void copy_run(float* __restrict out, const float* __restrict in, int64_t count,
                                                    const float* out_end) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  const int64_t whole = (count + L - 1) / L * L;
  if (out + whole <= out_end) {
    for (int64_t t = 0; t < whole; t += L) RECMOD_STORE(out + t, RECMOD_LOAD(in + t));
  } else {
    for (int64_t t = 0; t < count; ++t) out[t] = in[t];
  }
}

// GCC 12 warns inside the AVX-512 intrinsics used here (their "undefined"
// pass-through operands), at the header's lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// out[k * stride + r] = x[r][k0 + k] for r, k < 16: a 16 x 16 transpose in
/// registers (four rounds of 16 shuffles: 32-bit, 64-bit and two 128-bit
/// interleaves).
__attribute__((target("avx512f"))) void transpose_16x16(const float* const* x, int64_t k0, float* out, int64_t stride) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(x[i] + k0);
  for (int i = 0; i < 16; i += 2) {  // lane l: rows i, i + 1 at k = 4l .. 4l + 3, interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int q = 0; q < 16; q += 4) {  // r[q + m], lane l: rows q .. q + 3 at k = 4l + m
    const __m512d a = _mm512_castps_pd(t[q]), b = _mm512_castps_pd(t[q + 2]);
    const __m512d c = _mm512_castps_pd(t[q + 1]), d = _mm512_castps_pd(t[q + 3]);
    r[q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int m = 0; m < 4; ++m) {  // t[m]: lanes 0 and 2 of rows 0-3, 4-7; t[4 + m]: lanes 1 and 3; t[8..15] rows 8-15
    t[m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
    t[4 + m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
    t[8 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
    t[12 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
  }
  for (int m = 0; m < 4; ++m) {  // column k = 4l + m gathers lane l of the four row quads
    _mm512_storeu_ps(out + m * stride, _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88));
    _mm512_storeu_ps(out + (8 + m) * stride, _mm512_shuffle_f32x4(t[m], t[8 + m], 0xdd));
    _mm512_storeu_ps(out + (4 + m) * stride, _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0x88));
    _mm512_storeu_ps(out + (12 + m) * stride, _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0xdd));
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/// Forward of examples [begin, end): out[e] = [x0, <x_i, x_j> for i < j].
/// kRows gram rows at a time, two vectors of columns at a time: 2 kRows
/// independent sums over the d products (each x_i[k] broadcast once, each
/// X^T column vector loaded once for the kRows rows). Then each row's
/// pairs j > i are copied into the packed output.
template <typename V>
__attribute__((always_inline)) inline void forward_examples(const Rows& rows, float* o, int64_t n, int64_t pairs,
                                                            int64_t begin, int64_t end) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  constexpr int64_t kCols = 2 * L;
  const int64_t d = rows.d, np = padded(n), width = d + pairs;
  Scratch& s = scratch();
  s.fit(n, d);
  float* __restrict xt = s.xt.data();
  float* __restrict gram = s.gram.data();
  const float** xr = s.rows.data();
  for (int64_t e = begin; e < end; ++e) {
    // X^T: in 16 x 16 register tiles with AVX-512, else element by element
    // in the order of contiguous stores (with strided stores the transpose
    // took a third of the forward).
    for (int64_t i = 0; i < n; ++i) xr[i] = rows.row(e, i);
    int64_t k0 = 0;
    if constexpr (std::is_same_v<V, Lanes16>) {
      for (; k0 + 16 <= d; k0 += 16)
        for (int64_t i0 = 0; i0 < n; i0 += 16) transpose_16x16(xr + i0, k0, xt + k0 * np + i0, np);
    }
    for (int64_t k = k0; k < d; ++k)
      for (int64_t i = 0; i < n; ++i) xt[k * np + i] = xr[i][k];
    float* __restrict oe = o + e * width;
    // Vector copies may run past this example's output into the next one's
    // when this task writes that one later.
    const float* oe_end = oe + (e + 1 < end ? 2 : 1) * width;
    int64_t kd = 0;  // out = [x_0, ...]
    for (; kd + L <= d; kd += L) RECMOD_STORE(oe + kd, RECMOD_LOAD(xr[0] + kd));
    for (; kd < d; ++kd) oe[kd] = xr[0][kd];
    float* __restrict op = oe + d;
    for (int64_t i0 = 0; i0 + 1 < n; i0 += kRows) {
      // Rows past n - 2 repeat row n - 1 (computed, never copied out).
      const float* x[kRows];
      for (int64_t r = 0; r < kRows; ++r) x[r] = xr[std::min(i0 + r, n - 1)];
      for (int64_t jb = (i0 + 1) / kCols * kCols; jb < np; jb += kCols) {
        V a[kRows][2] = {};
        for (int64_t k = 0; k < d; ++k) {
          const float* col = xt + k * np + jb;
          const V c0 = RECMOD_LOAD(col), c1 = RECMOD_LOAD(col + L);
          for (int64_t r = 0; r < kRows; ++r) {
            const float xk = x[r][k];
            a[r][0] += xk * c0;
            a[r][1] += xk * c1;
          }
        }
        for (int64_t r = 0; r < kRows; ++r) {
          RECMOD_STORE(gram + r * np + jb, a[r][0]);
          RECMOD_STORE(gram + r * np + jb + L, a[r][1]);
        }
      }
      for (int64_t r = 0; r < kRows && i0 + r + 1 < n; ++r) {
        const int64_t i = i0 + r;
        copy_run<V>(op, gram + r * np + i + 1, n - 1 - i, oe_end);
        op += n - 1 - i;
      }
    }
  }
}

/// Backward of examples [begin, end): with G the symmetric n x n matrix of
/// the pair gradients (zero diagonal), grad x_i = sum_j G[i, j] x_j (plus
/// the pass-through gradient for x_0). G is read from the packed pair
/// gradients in place: G[i, j] for j > i is gz[start_i + j], and for j < i
/// it is G[j, i] = gz[start_j + i] (a strided read; building G took as long
/// as the sums). kGradRows rows i at a time, a vector of d at a time, each
/// x_j vector loaded once for them, each sum held in a register and written
/// once.
template <typename V>
__attribute__((always_inline)) inline void backward_examples(const Rows& rows, const float* gp, float* gd, float* gs,
                                                             int64_t n, int64_t pairs, int64_t begin, int64_t end) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  const int64_t d = rows.d, f = rows.f;
  Scratch& s = scratch();
  s.fit(n, d);
  // start[i] = (packed position of pair (i, i + 1)) - (i + 1).
  int64_t* start = s.start.data();
  for (int64_t i = 0, first = 0; i < n; first += n - 1 - i, ++i) start[i] = first - (i + 1);
  const float** xr = s.rows.data();
  for (int64_t e = begin; e < end; ++e) {
    const float* ge = gp + e * (d + pairs);
    const float* gz = ge + d;
    for (int64_t i = 0; i < n; ++i) xr[i] = rows.row(e, i);
    auto out_row = [&](int64_t i) { return i == 0 ? gd + e * d : gs + (e * f + i - 1) * d; };
    // G[i, j] for any i, j (the diagonal is 0).
    auto pair_grad = [&](int64_t i, int64_t j) { return i < j ? gz[start[i] + j] : i > j ? gz[start[j] + i] : 0.f; };
    for (int64_t i0 = 0; i0 < n; i0 += kGradRows) {
      // Rows past n - 1 repeat row n - 1 (computed, never written).
      int64_t row[kGradRows];
      for (int64_t r = 0; r < kGradRows; ++r) row[r] = std::min(i0 + r, n - 1);
      const int64_t rows_here = std::min(kGradRows, n - i0), group_end = std::min(i0 + kGradRows, n);
      const float* after[kGradRows];  // G[row, j] from j = group_end on
      for (int64_t r = 0; r < kGradRows; ++r) after[r] = gz + (start[row[r]] + group_end);
      float mid[kGradRows][kGradRows];  // G within the group's own rows
      for (int64_t r = 0; r < kGradRows; ++r)
        for (int64_t j = i0; j < group_end; ++j) mid[r][j - i0] = pair_grad(row[r], j);
      int64_t kb = 0;
      for (; kb + L <= d; kb += L) {
        V a[kGradRows] = {};
        if (i0 == 0) a[0] = RECMOD_LOAD(ge + kb);
        for (int64_t j = 0; j < i0; ++j) {  // j < every row of the group: G[j, row]
          const V x = RECMOD_LOAD(xr[j] + kb);
          const float* gj = gz + start[j];
          for (int64_t r = 0; r < kGradRows; ++r) a[r] += gj[row[r]] * x;
        }
        for (int64_t j = i0; j < group_end; ++j) {
          const V x = RECMOD_LOAD(xr[j] + kb);
          for (int64_t r = 0; r < kGradRows; ++r) a[r] += mid[r][j - i0] * x;
        }
        for (int64_t j = group_end; j < n; ++j) {  // j > every row of the group: G[row, j]
          const V x = RECMOD_LOAD(xr[j] + kb);
          for (int64_t r = 0; r < kGradRows; ++r) a[r] += after[r][j - group_end] * x;
        }
        for (int64_t r = 0; r < rows_here; ++r) RECMOD_STORE(out_row(i0 + r) + kb, a[r]);
      }
      for (int64_t r = 0; r < rows_here; ++r)
        for (int64_t k = kb; k < d; ++k) {
          float a = i0 + r == 0 ? ge[k] : 0.f;
          for (int64_t j = 0; j < n; ++j) a += pair_grad(row[r], j) * xr[j][k];
          out_row(i0 + r)[k] = a;
        }
    }
  }
}

// Each kernel is compiled three times: the baseline (SSE), AVX2 + FMA and
// AVX-512, chosen by CPUID at run time.
__attribute__((target("avx512f,avx2,fma"))) void forward_avx512(const Rows& rows, float* o, int64_t n, int64_t pairs,
                                                                int64_t begin, int64_t end) {
  forward_examples<Lanes16>(rows, o, n, pairs, begin, end);
}
__attribute__((target("avx2,fma"))) void forward_avx2(const Rows& rows, float* o, int64_t n, int64_t pairs,
                                                      int64_t begin, int64_t end) {
  forward_examples<Lanes8>(rows, o, n, pairs, begin, end);
}
void forward_default(const Rows& rows, float* o, int64_t n, int64_t pairs, int64_t begin, int64_t end) {
  forward_examples<Lanes8>(rows, o, n, pairs, begin, end);
}
__attribute__((target("avx512f,avx2,fma"))) void backward_avx512(const Rows& rows, const float* gp, float* gd,
                                                                 float* gs, int64_t n, int64_t pairs, int64_t begin,
                                                                 int64_t end) {
  backward_examples<Lanes16>(rows, gp, gd, gs, n, pairs, begin, end);
}
__attribute__((target("avx2,fma"))) void backward_avx2(const Rows& rows, const float* gp, float* gd, float* gs,
                                                       int64_t n, int64_t pairs, int64_t begin, int64_t end) {
  backward_examples<Lanes8>(rows, gp, gd, gs, n, pairs, begin, end);
}
void backward_default(const Rows& rows, const float* gp, float* gd, float* gs, int64_t n, int64_t pairs, int64_t begin,
                      int64_t end) {
  backward_examples<Lanes8>(rows, gp, gd, gs, n, pairs, begin, end);
}

using ForwardKernel = void (*)(const Rows&, float*, int64_t, int64_t, int64_t, int64_t);
using BackwardKernel = void (*)(const Rows&, const float*, float*, float*, int64_t, int64_t, int64_t, int64_t);

/// The build the CPU has (or the one a test forced).
InteractionIsa& chosen_isa() {
  static InteractionIsa isa = [] {
    for (InteractionIsa best : {InteractionIsa::kAvx512, InteractionIsa::kAvx2})
      if (cpu_runs_interaction_isa(best)) return best;
    return InteractionIsa::kBaseline;
  }();
  return isa;
}

/// The chosen build's forward and backward.
struct Kernels {
  ForwardKernel forward;
  BackwardKernel backward;
};
Kernels kernels() {
  switch (chosen_isa()) {
    case InteractionIsa::kAvx512:
      return {forward_avx512, backward_avx512};
    case InteractionIsa::kAvx2:
      return {forward_avx2, backward_avx2};
    default:
      return {forward_default, backward_default};
  }
}

class DotInteractionFunction : public torch::autograd::Function<DotInteractionFunction> {
 public:
  static torch::Tensor run_forward(const torch::Tensor& x0, const torch::Tensor& xs, int64_t num_sparse) {
    const int64_t b = x0.size(0), d = x0.size(1), n = num_sparse + 1, pairs = n * (n - 1) / 2;
    torch::Tensor out = torch::empty({b, d + pairs}, x0.options());
    const Rows rows{x0.data_ptr<float>(), xs.data_ptr<float>(), num_sparse, d};
    float* o = out.data_ptr<float>();
    const ForwardKernel kernel = kernels().forward;
    at::parallel_for(0, b, grain(n, d), [&](int64_t begin, int64_t end) { kernel(rows, o, n, pairs, begin, end); });
    return out;
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& dense,
                               const torch::Tensor& sparse, int64_t num_sparse) {
    const torch::Tensor x0 = dense.contiguous(), xs = sparse.contiguous();
    ctx->save_for_backward({x0, xs});
    ctx->saved_data["num_sparse"] = num_sparse;
    return run_forward(x0, xs, num_sparse);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x0 = saved[0];
    const torch::Tensor& xs = saved[1];
    const int64_t num_sparse = ctx->saved_data["num_sparse"].toInt();
    const int64_t b = x0.size(0), d = x0.size(1), n = num_sparse + 1, pairs = n * (n - 1) / 2;
    const torch::Tensor g = grads[0].contiguous();
    // Every element of both gradients is written once (no zero fill).
    torch::Tensor g_dense = torch::empty_like(x0);
    torch::Tensor g_sparse = torch::empty_like(xs);
    const Rows rows{x0.data_ptr<float>(), xs.data_ptr<float>(), num_sparse, d};
    const float* gp = g.data_ptr<float>();
    float* gd = g_dense.data_ptr<float>();
    float* gs = g_sparse.data_ptr<float>();
    const BackwardKernel kernel = kernels().backward;
    at::parallel_for(0, b, grain(n, d),
                     [&](int64_t begin, int64_t end) { kernel(rows, gp, gd, gs, n, pairs, begin, end); });
    return {g_dense, g_sparse, torch::Tensor()};
  }
};

#undef RECMOD_LOAD
#undef RECMOD_STORE

}  // namespace

bool cpu_runs_interaction_isa(InteractionIsa isa) {
  switch (isa) {
    case InteractionIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && cpu_runs_interaction_isa(InteractionIsa::kAvx2);
    case InteractionIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
}

InteractionIsa use_interaction_isa(InteractionIsa isa) {
  RECMOD_CHECK_INPUT(cpu_runs_interaction_isa(isa), "DotInteraction: this CPU cannot run the requested kernel build");
  return std::exchange(chosen_isa(), isa);
}

torch::Tensor dot_interaction_reference(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse) {
  const int64_t batch = dense.size(0), dim = dense.size(1);
  auto combined = torch::cat({dense.unsqueeze(1), sparse.reshape({batch, num_sparse, dim})}, 1);
  auto interactions = torch::bmm(combined, combined.transpose(1, 2));
  const int64_t features = num_sparse + 1;
  auto idx =
      torch::triu_indices(features, features, 1, torch::TensorOptions().dtype(torch::kLong).device(dense.device()));
  // The pairs i < j as columns of the flattened (F*F) products: index_select's
  // backward is an index_add into distinct columns, where 2-d advanced
  // indexing's is an accumulating index_put (sort-based on CUDA). The same
  // values and gradients, bit for bit (checked on the CPU).
  auto flat = interactions.reshape({batch, features * features}).index_select(1, idx[0] * features + idx[1]);
  return torch::cat({dense, flat}, 1);
}

torch::Tensor dot_interaction(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse) {
  const int64_t batch = dense.size(0), dim = dense.size(1);
  RECMOD_CHECK_INPUT(sparse.dim() == 2 && sparse.size(0) == batch && sparse.size(1) == num_sparse * dim,
                     "DotInteraction: expected sparse (", batch, ", ", num_sparse * dim, "), got ", sparse.sizes());
  if (num_sparse == 0) return dense;
  const bool direct = dense.device().is_cpu() && sparse.device().is_cpu() && dense.scalar_type() == torch::kFloat &&
                      sparse.scalar_type() == torch::kFloat;
  if (!direct) return dot_interaction_reference(dense, sparse, num_sparse);
  const bool grad = torch::autograd::GradMode::is_enabled() && (dense.requires_grad() || sparse.requires_grad());
  // Without autograd (eval, predictions): the kernel alone, nothing saved.
  if (!grad) return DotInteractionFunction::run_forward(dense.contiguous(), sparse.contiguous(), num_sparse);
  return DotInteractionFunction::apply(dense, sparse, num_sparse);
}

}  // namespace recmod
