#include "recmod/modules/interaction.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
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

constexpr int64_t kLanes = 8;       // floats in one AVX2 register
constexpr int64_t kBlock = 4 * kLanes;  // the n dimension is padded to this: 4 independent sums in flight

int64_t padded(int64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

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

/// kLanes floats in one register (GCC vector extension: AVX2 in the avx2
/// build of the kernels, two SSE registers in the baseline one). Unaligned
/// access goes through the aligned(4) alias type; no function takes or
/// returns a vector (that would change the ABI between the two builds).
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
typedef float UnalignedLanes __attribute__((vector_size(kLanes * sizeof(float)), aligned(4), may_alias));
#define RECMOD_LOAD(p) (*reinterpret_cast<const UnalignedLanes*>(p))
#define RECMOD_STORE(p, v) (*reinterpret_cast<UnalignedLanes*>(p) = (v))

/// Per-thread scratch of one example: its n rows transposed (d x np), and
/// the gram row / gradient matrix (n x np). Reused across examples and steps.
struct Scratch {
  std::vector<float> xt, g;
  std::vector<const float*> rows;  // the example's n rows
  std::vector<int32_t> pair_index;  // n x n: the packed position of pair (i, j), the diagonal -> pairs
  int64_t pair_index_n = -1;
  const int32_t* index_of_pairs(int64_t n) {
    if (pair_index_n != n) {
      pair_index.assign(n * n, static_cast<int32_t>(n * (n - 1) / 2));
      int32_t p = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j, ++p) pair_index[i * n + j] = pair_index[j * n + i] = p;
      pair_index_n = n;
    }
    return pair_index.data();
  }
  void fit(int64_t n, int64_t d) {
    const int64_t np = padded(n);
    if (static_cast<int64_t>(rows.size()) < n) rows.resize(n);
    if (static_cast<int64_t>(xt.size()) < d * np) xt.assign(d * np, 0.f);
    if (static_cast<int64_t>(g.size()) < std::max(n * np, n * (n - 1) / 2 + 1)) g.assign(std::max(n * np, n * (n - 1) / 2 + 1), 0.f);
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// The kernels are written so that the compiler vectorises the innermost
// loops over the padded n (forward) or d (backward); each is compiled for
// the baseline and, behind a CPUID check, for AVX2 + FMA.

/// Forward of examples [begin, end): out[e] = [x0, <x_i, x_j> for i < j].
/// Each gram row i is sum_k x_i[k] * X^T[k, :], a run of vector FMAs over
/// the padded j, from j = i + 1 rounded down to the vector width.
__attribute__((always_inline)) inline void forward_examples(const Rows& rows, float* o, int64_t n, int64_t pairs,
                                                            int64_t begin, int64_t end) {
  const int64_t d = rows.d, np = padded(n);
  Scratch& s = scratch();
  s.fit(n, d);
  float* __restrict xt = s.xt.data();
  float* __restrict acc = s.g.data();
  for (int64_t e = begin; e < end; ++e) {
    for (int64_t i = 0; i < n; ++i) {
      const float* x = rows.row(e, i);
      for (int64_t k = 0; k < d; ++k) xt[k * np + i] = x[k];
    }
    float* __restrict oe = o + e * (d + pairs);
    std::copy(rows.row(e, 0), rows.row(e, 0) + d, oe);
    float* __restrict op = oe + d;
    for (int64_t i = 0; i + 1 < n; ++i) {
      const float* __restrict x = rows.row(e, i);
      // kBlock j's at a time: four registers of sums, independent chains
      // over the d products.
      for (int64_t jb = (i + 1) / kBlock * kBlock; jb < np; jb += kBlock) {
        Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (int64_t k = 0; k < d; ++k) {
          const float xk = x[k];
          const float* col = xt + k * np + jb;
          a0 += xk * RECMOD_LOAD(col);
          a1 += xk * RECMOD_LOAD(col + kLanes);
          a2 += xk * RECMOD_LOAD(col + 2 * kLanes);
          a3 += xk * RECMOD_LOAD(col + 3 * kLanes);
        }
        RECMOD_STORE(acc + jb, a0);
        RECMOD_STORE(acc + jb + kLanes, a1);
        RECMOD_STORE(acc + jb + 2 * kLanes, a2);
        RECMOD_STORE(acc + jb + 3 * kLanes, a3);
      }
      std::memcpy(op, acc + i + 1, sizeof(float) * (n - 1 - i));
      op += n - 1 - i;
    }
  }
}

/// Backward of examples [begin, end): with G the symmetric n x n matrix of
/// the pair gradients (zero diagonal), grad x_i = sum_j G[i, j] x_j (plus the
/// pass-through gradient for x_0), accumulated in registers over d and
/// written once.
__attribute__((always_inline)) inline void backward_examples(const Rows& rows, const float* gp, float* gd, float* gs,
                                                             int64_t n, int64_t pairs, int64_t begin, int64_t end) {
  const int64_t d = rows.d, f = rows.f;
  Scratch& s = scratch();
  s.fit(n, d);
  // gz: the example's packed pair gradients and a trailing 0; pos[i * n + j]
  // the position of pair (min, max) in it (the diagonal: the 0). Rows of G
  // are read through it, so G is never built.
  float* __restrict gz = s.g.data();
  const int32_t* pos = s.index_of_pairs(n);
  const float** xr = s.rows.data();
  for (int64_t e = begin; e < end; ++e) {
    const float* ge = gp + e * (d + pairs);
    std::memcpy(gz, ge + d, sizeof(float) * pairs);
    gz[pairs] = 0.f;
    for (int64_t i = 0; i < n; ++i) xr[i] = rows.row(e, i);
    auto out_row = [&](int64_t i) { return i == 0 ? gd + e * d : gs + (e * f + i - 1) * d; };
    // Four rows i at a time, kLanes columns at a time: four independent
    // sums over the n rows j, each x_j loaded once for the four.
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const int32_t *g0 = pos + i * n, *g1 = g0 + n, *g2 = g1 + n, *g3 = g2 + n;
      int64_t kb = 0;
      for (; kb + kLanes <= d; kb += kLanes) {
        Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
        if (i == 0) a0 = RECMOD_LOAD(ge + kb);
        for (int64_t j = 0; j < n; ++j) {
          const Lanes x = RECMOD_LOAD(xr[j] + kb);
          a0 += gz[g0[j]] * x;
          a1 += gz[g1[j]] * x;
          a2 += gz[g2[j]] * x;
          a3 += gz[g3[j]] * x;
        }
        RECMOD_STORE(out_row(i) + kb, a0);
        RECMOD_STORE(out_row(i + 1) + kb, a1);
        RECMOD_STORE(out_row(i + 2) + kb, a2);
        RECMOD_STORE(out_row(i + 3) + kb, a3);
      }
      for (int64_t r = i; r < i + 4; ++r)
        for (int64_t k = kb; k < d; ++k) {
          float a = r == 0 ? ge[k] : 0.f;
          for (int64_t j = 0; j < n; ++j) a += gz[pos[r * n + j]] * xr[j][k];
          out_row(r)[k] = a;
        }
    }
    for (; i < n; ++i) {
      const int32_t* gi = pos + i * n;
      float* out = out_row(i);
      int64_t kb = 0;
      for (; kb + kLanes <= d; kb += kLanes) {
        Lanes a = {};
        if (i == 0) a = RECMOD_LOAD(ge + kb);
        for (int64_t j = 0; j < n; ++j) a += gz[gi[j]] * RECMOD_LOAD(xr[j] + kb);
        RECMOD_STORE(out + kb, a);
      }
      for (int64_t k = kb; k < d; ++k) {
        float a = i == 0 ? ge[k] : 0.f;
        for (int64_t j = 0; j < n; ++j) a += gz[gi[j]] * xr[j][k];
        out[k] = a;
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void forward_avx2(const Rows& rows, float* o, int64_t n, int64_t pairs,
                                                      int64_t begin, int64_t end) {
  forward_examples(rows, o, n, pairs, begin, end);
}
void forward_default(const Rows& rows, float* o, int64_t n, int64_t pairs, int64_t begin, int64_t end) {
  forward_examples(rows, o, n, pairs, begin, end);
}
__attribute__((target("avx2,fma"))) void backward_avx2(const Rows& rows, const float* gp, float* gd, float* gs,
                                                       int64_t n, int64_t pairs, int64_t begin, int64_t end) {
  backward_examples(rows, gp, gd, gs, n, pairs, begin, end);
}
void backward_default(const Rows& rows, const float* gp, float* gd, float* gs, int64_t n, int64_t pairs,
                      int64_t begin, int64_t end) {
  backward_examples(rows, gp, gd, gs, n, pairs, begin, end);
}

bool has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

class DotInteractionFunction : public torch::autograd::Function<DotInteractionFunction> {
 public:
  static torch::Tensor run_forward(const torch::Tensor& x0, const torch::Tensor& xs, int64_t num_sparse) {
    const int64_t b = x0.size(0), d = x0.size(1), n = num_sparse + 1, pairs = n * (n - 1) / 2;
    torch::Tensor out = torch::empty({b, d + pairs}, x0.options());
    const Rows rows{x0.data_ptr<float>(), xs.data_ptr<float>(), num_sparse, d};
    float* o = out.data_ptr<float>();
    const bool avx2 = has_avx2_fma();
    at::parallel_for(0, b, grain(n, d), [&](int64_t begin, int64_t end) {
      (avx2 ? forward_avx2 : forward_default)(rows, o, n, pairs, begin, end);
    });
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
    const bool avx2 = has_avx2_fma();
    at::parallel_for(0, b, grain(n, d), [&](int64_t begin, int64_t end) {
      (avx2 ? backward_avx2 : backward_default)(rows, gp, gd, gs, n, pairs, begin, end);
    });
    return {g_dense, g_sparse, torch::Tensor()};
  }
};

#undef RECMOD_LOAD
#undef RECMOD_STORE

}  // namespace

torch::Tensor dot_interaction_reference(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse) {
  const int64_t batch = dense.size(0), dim = dense.size(1);
  auto combined = torch::cat({dense.unsqueeze(1), sparse.reshape({batch, num_sparse, dim})}, 1);
  auto interactions = torch::bmm(combined, combined.transpose(1, 2));
  const int64_t features = num_sparse + 1;
  auto idx = torch::triu_indices(features, features, 1,
                                 torch::TensorOptions().dtype(torch::kLong).device(dense.device()));
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
