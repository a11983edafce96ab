#pragma once
// CUDA activity of a few training steps, as `recmod profile --device cuda`
// reports it: kernels, memcpys and memsets per step (recorded by libtorch's
// Kineto profiler, CUDA activity only), the time the GPU was busy, and the
// rest of the steps' wall time, when it was idle.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace recmod::profile {

enum class GpuEventKind { Kernel, Memcpy, Memset };

/// One activity the GPU ran, in the profiler's clock (ns).
struct GpuEvent {
  GpuEventKind kind = GpuEventKind::Kernel;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

/// [start_ns, end_ns); an interval with end <= start is empty.
struct Interval {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

/// The length of the union of `intervals` (overlapping and nested ones
/// counted once), in ns.
int64_t union_length_ns(std::vector<Interval> intervals);

/// A kernel (name shortened by short_kernel_name) and how often it ran a step.
struct KernelCount {
  std::string name;
  double per_step = 0;
};

/// A CUDA kernel's name without "void ", its parameter list, and beyond 120
/// characters (template arguments of the elementwise kernels run long).
std::string short_kernel_name(const std::string& name);

/// The `most` kernels that ran most often in `steps` steps (names as
/// recorded, one per kernel run), by count, ties by name.
std::vector<KernelCount> most_run_kernels(const std::vector<std::string>& names, int64_t steps, size_t most);

/// Per-step averages over the measured steps.
struct GpuActivity {
  bool available = false;
  std::string unavailable_reason;  // when !available: why there are no figures
  int64_t steps = 0;               // steps measured
  double kernels_per_step = 0;     // kernels that ran (a CUDA graph replay counts each of its kernels)
  double memcpys_per_step = 0;
  double memsets_per_step = 0;
  double wall_ms_per_step = 0;    // host time of a measured step, ending when the GPU is done
  double busy_ms_per_step = 0;    // some kernel or memset running (union of their intervals)
  double memcpy_ms_per_step = 0;  // some copy running (union), not counted as busy
  double idle_ms_per_step = 0;    // wall - busy, >= 0
  double idle_percent = 0;        // idle / wall * 100, in [0, 100]
  std::vector<KernelCount> top_kernels;  // where the kernel count comes from (most run first)

  nlohmann::json to_json() const;
  /// One line, "cuda: ..." (the figures, or why there are none), then
  /// "cuda kernels/step: ..." when top_kernels is known.
  std::string to_line() const;
};

/// The figures of `events` recorded over `steps` steps of `wall_ms` host
/// time in all. No events at all: unavailable (the profiler recorded no
/// CUDA activity, e.g. a libtorch built without Kineto/CUPTI).
GpuActivity summarise_gpu_activity(const std::vector<GpuEvent>& events, int64_t steps, double wall_ms);

/// Runs one step and returns its host wall time in ms (the step must end
/// with the GPU done), or nullopt when there is no batch for it.
using TimedStep = std::function<std::optional<double>()>;

/// Runs up to `steps` steps with libtorch's Kineto profiler recording CUDA
/// activity (the GPU's work must be done before the call) and summarises
/// what it recorded; fewer when `step` runs out of batches. Never throws for
/// the profiler: one that cannot start (no steps run then), or that records
/// nothing, gives an unavailable GpuActivity. Errors of the steps propagate
/// (the profiler stopped first).
GpuActivity measure_gpu_activity(int64_t steps, const TimedStep& step);

}  // namespace recmod::profile
