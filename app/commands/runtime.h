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
