#pragma once
// DLRM's pairwise dot interaction (TorchRec's InteractionArch).
#include <torch/types.h>

namespace recmod {

/// x_0 = dense, x_1..x_F = the F sparse embeddings (sparse is (B, F * D));
/// out = [dense, x_i . x_j for 0 <= i < j <= F, in row-major order];
/// dense (B, D) -> out (B, D + F(F+1)/2).
///
/// On the CPU (float32) the pairs are computed directly, forward and
/// backward (F(F+1)/2 dot products of length D an example, half the work of
/// the (F+1)x(F+1) batched product and no gather); elsewhere, and for other
/// dtypes, bmm + triu gather as TorchRec does. Both give the same values up
/// to float rounding.
torch::Tensor dot_interaction(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse);

/// The bmm + triu gather formulation on any device (the reference).
torch::Tensor dot_interaction_reference(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse);

/// The builds of the direct CPU kernels; CPUID picks the best the CPU has.
enum class InteractionIsa { kAvx512, kAvx2, kBaseline };

/// Whether this CPU can run `isa`'s build.
bool cpu_runs_interaction_isa(InteractionIsa isa);

/// For tests: run `isa`'s build (one the CPU runs) from now on, in every
/// thread; returns the build it replaces.
InteractionIsa use_interaction_isa(InteractionIsa isa);

}  // namespace recmod
