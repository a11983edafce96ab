#pragma once
// How much memory the machine has left, for refusing allocations that could
// not fit up front (with the numbers) rather than meeting the OOM killer.
#include <cstdint>
#include <optional>
#include <string>

namespace recmod {

/// MemAvailable from /proc/meminfo in bytes; nullopt where it cannot be read.
std::optional<uint64_t> available_memory_bytes();

/// "1.5 GiB", "312.0 MiB", "17 bytes".
std::string format_bytes(double bytes);

}  // namespace recmod
