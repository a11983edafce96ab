#pragma once
// Process-wide settings shared by the commands: threads and device.
//
// Fast defaults on a shared machine (runtime.cpp has the details): before any
// library starts, a recmod process that runs a computing command (train, eval,
// profile, evict, ...) re-executes itself once, same argv, adding what its
// environment does not set: OMP_WAIT_POLICY=PASSIVE (unless OMP_WAIT_POLICY
// or GOMP_SPINCOUNT is set), so that libgomp's idle threads sleep instead of
// spinning on cores other work needs, and glibc malloc thresholds
// (GLIBC_TUNABLES, unless it or MALLOC_*_THRESHOLD_ is set), so that a step's
// buffers are not given back to the kernel and faulted in again every step.
// A user's setting is left alone.
#include <torch/types.h>

#include <string>

namespace recmod::app {

/// Sets torch's intra-op threads and OpenBLAS's threads to the same count;
/// 0 means default_threads().
void set_threads(int threads);

/// OpenBLAS's idle workers spin for 2^28 cycles (~0.1 s) after each GEMM
/// before they sleep. With at least 2 threads and a step of at least
/// kShortBlasSpinRows rows per rank, and no OPENBLAS_THREAD_TIMEOUT of the
/// user's, this restarts them with a 2^20-cycle spin (~0.3 ms), so that
/// torch's OpenMP threads get the cores between the GEMMs (BENCHMARKS.md,
/// "OpenBLAS's spin by batch size"). Nothing with another BLAS (looked up at
/// run time). Call before the first step, with no BLAS call in flight.
/// Returns what the workers now do, e.g. "OpenBLAS's workers spin 2^20
/// cycles after a GEMM (short: 2048 rows per rank on 2 threads)"; empty
/// without OpenBLAS.
std::string tune_blas_spin(int64_t rows_per_step);
constexpr int64_t kShortBlasSpinRows = 1024;

/// Under OMP_WAIT_POLICY=PASSIVE (recmod's default, see above) every
/// parallel region wakes the sleeping OpenMP threads: 18-23 us a region on a
/// 2-vCPU VM, 90 us after a 0.5 ms pause (BENCHMARKS.md, "DotInteraction in
/// AVX-512, and small steps on one thread"). A step of few rows is made of
/// regions shorter than that, so with fewer than kMinRowsPerThread rows per
/// thread this lowers torch's intra-op threads to rows_per_step /
/// kMinRowsPerThread (at least 1). Not when the user set GOMP_SPINCOUNT or
/// another wait policy (the threads then spin, and wake in ~3 us). Call
/// after set_threads, before the first step.
/// Returns what it did, e.g. "steps of 128 rows run on 1 thread of 2 ...";
/// empty when it left the threads alone.
std::string fit_threads_to_step(int64_t rows_per_step);
constexpr int64_t kMinRowsPerThread = 128;

/// The CPUs this process may use: those in its affinity mask
/// (sched_getaffinity: taskset, cpusets, container limits), fewer when a
/// cgroup CPU quota on its cgroup or any parent allows less (cgroup v2
/// cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us; 1.5 CPUs counts as 2);
/// at least 1.
int default_threads();

/// "cpu", "cuda", "cuda:N"; UsageError for anything else or a CUDA device
/// this build or machine lacks.
torch::Device parse_device(const std::string& name);

}  // namespace recmod::app
