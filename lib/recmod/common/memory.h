#pragma once
// How much memory the machine has left, for refusing allocations that could
// not fit up front (with the numbers) rather than meeting the OOM killer.
#include <cstdint>
#include <optional>
#include <string>

namespace recmod {

/// The memory this process may still take: MemAvailable from /proc/meminfo,
/// or less where its memory cgroup allows less (cgroup_memory_available: a
/// container's limit, which /proc/meminfo does not show); nullopt where
/// neither can be read.
std::optional<uint64_t> available_memory_bytes();

/// What the memory cgroups of a process leave it, from the text of its
/// /proc/self/cgroup and the cgroup file system mounted at `cgroup_root`
/// (/sys/fs/cgroup): per limited cgroup, its limit less its usage, the
/// inactive file pages not counted (the kernel reclaims them first); the
/// smallest over the cgroup and its parents (v2), or the hierarchical limit
/// (v1). nullopt when no limit applies or nothing can be read.
std::optional<uint64_t> cgroup_memory_available(const std::string& proc_self_cgroup, const std::string& cgroup_root);

/// "1.5 GiB", "312.0 MiB", "17 bytes".
std::string format_bytes(double bytes);

}  // namespace recmod
