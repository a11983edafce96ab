#pragma once
// Transparent huge pages under large tables: random row accesses to a table
// far larger than the TLB's reach of 4 KiB pages spend much of their time in
// page walks (BENCHMARKS.md: the fused backward's row update ran 1.5-1.7x
// faster on a 1 GiB table with 2 MiB pages). Header-only on purpose.
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace recmod {

/// Asks the kernel (Linux, THP in `madvise` or `always` mode) for huge pages
/// under the whole 2 MiB pages inside [data, data + bytes). Call it before
/// anything touches the memory: pages already faulted in stay small until
/// khugepaged collapses them. Advice only: failure, small ranges and other
/// systems are left alone; contents are unchanged either way.
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + bytes) & ~(kHuge - 1);
  if (data != nullptr && last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace recmod
