#pragma once
// fp32 matrix products on the CPU through oneDNN's GEMM (dnnl_sgemm) instead
// of libtorch's BLAS (OpenBLAS on Debian).
//
// Why: Debian's libtorch multiplies fp32 matrices with the system OpenBLAS
// (0.3.21), which some machines pin to its AVX2 kernels (OPENBLAS_CORETYPE:
// 0.3.21 computes wrong results or crashes on some newer cores), while
// oneDNN 2.6 -- already loaded by that libtorch -- picks its kernels from the
// CPU's own feature flags. On the Kaggle DLRM's layer shapes (one thread,
// AVX-512 Zen 5 VM) its sgemm ran 199-202 GFLOP/s against OpenBLAS's 99-100,
// at batch 2048 and 128 alike (BENCHMARKS.md, "oneDNN's sgemm for the dense
// layers"). It also runs on libgomp, torch's own thread pool, instead of
// OpenBLAS's pthreads.
//
// Built in only against Debian's libtorch with libdnnl-dev present
// (RECMOD_ONEDNN_SGEMM); elsewhere, or with RECMOD_ONEDNN_SGEMM=0 in the
// environment (read once), onednn_sgemm_enabled() is false and callers keep
// libtorch's products.
#include <torch/types.h>

#include <cstdint>

namespace recmod {

/// True when fp32 CPU products go through oneDNN: built with it and not
/// turned off by RECMOD_ONEDNN_SGEMM=0.
bool onednn_sgemm_enabled();

/// Row-major C (m x n) = alpha op(A) op(B) + beta C, op = transpose when
/// asked; lda/ldb/ldc are row strides. With beta = 0, C is not read.
/// Requires onednn_sgemm_enabled(); throws std::runtime_error on a oneDNN
/// failure.
void onednn_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

/// Whether onednn_linear takes these tensors: enabled, CPU, fp32, a 2-D
/// input with rows and columns, a 2-D weight (O, I), a bias (O).
bool onednn_linear_applies(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias);

/// y = x W^T + b: (B, I) x (O, I) + (O) -> (B, O), as torch::linear, with
/// every product through onednn_sgemm. Under autograd the backward is
/// dx = dy W (B, I), dW = dy^T x (O, I), db = column sums of dy (O), each
/// only when that input needs it. The same numbers as torch::linear within
/// fp32 rounding of a differently ordered sum.
torch::Tensor onednn_linear(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias);

/// x W^T + b by onednn_linear where it applies (with a graph only while
/// autograd records; without, one product and a bias pass), else
/// torch::linear. Also for layers outside the MLPs (config `Linear` nodes),
/// so that a model's products leave OpenBLAS entirely: a product there wakes
/// OpenBLAS's own worker threads, which then spin (~0.1 s, OpenBLAS's
/// default) on the cores oneDNN's OpenMP threads need.
torch::Tensor linear_any(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias);

/// op(a) op(b) (op = transpose when asked) into a fresh tensor, nothing for
/// autograd: through onednn_sgemm for fp32 CPU matrices where enabled, else
/// torch::mm. E.g. mm_any(x, false, w, true) = x W^T.
torch::Tensor mm_any(const torch::Tensor& a, bool transpose_a, const torch::Tensor& b, bool transpose_b);

}  // namespace recmod
