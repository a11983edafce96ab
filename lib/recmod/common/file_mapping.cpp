#include "recmod/common/file_mapping.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <system_error>

namespace recmod {

namespace {

// The mappings the SIGBUS handler may repair; a slot is free when begin == 0.
// Lock-free reads in the handler; taking and freeing slots under a mutex.
struct Slot {
  std::atomic<uintptr_t> begin{0}, end{0};
  std::atomic<int> prot{PROT_READ};
  std::atomic<bool> cut{false};
};
constexpr int kSlots = 1024;
Slot g_slots[kSlots];
std::mutex g_slots_mutex;
struct sigaction g_previous_sigbus {};
uintptr_t g_page_size = 4096;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& slot : g_slots) {
    const uintptr_t begin = slot.begin.load(std::memory_order_acquire), end = slot.end.load(std::memory_order_acquire);
    if (begin == 0 || addr < begin || addr >= end) continue;
    // Zero pages from the faulting page to the end of the mapping (with the
    // mapping's protection): the access is retried and sees zeros; the owner
    // sees the flag.
    const uintptr_t from = addr & ~(g_page_size - 1);
    void* p = ::mmap(reinterpret_cast<void*>(from), end - from, slot.prot.load(std::memory_order_relaxed),
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p != MAP_FAILED) {
      slot.cut.store(true, std::memory_order_relaxed);
      return;
    }
  }
  // Not one of ours (or it could not be repaired): as before this handler.
  if ((g_previous_sigbus.sa_flags & SA_SIGINFO) && g_previous_sigbus.sa_sigaction) {
    g_previous_sigbus.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous_sigbus.sa_handler != SIG_DFL && g_previous_sigbus.sa_handler != SIG_IGN &&
      g_previous_sigbus.sa_handler != nullptr) {
    g_previous_sigbus.sa_handler(sig);
    return;
  }
  ::signal(SIGBUS, SIG_DFL);  // the retried access faults again and ends the process
}

/// A slot for [begin, begin + size); -1 when the table is full (then a cut
/// file ends the process with SIGBUS, as without the handler).
int register_mapping(const char* begin, size_t size, int prot) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    g_page_size = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &g_previous_sigbus);
  });
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].begin.load(std::memory_order_relaxed) != 0) continue;
    const auto b = reinterpret_cast<uintptr_t>(begin);
    const uintptr_t page = g_page_size;
    g_slots[i].cut.store(false, std::memory_order_relaxed);
    g_slots[i].prot.store(prot, std::memory_order_relaxed);
    g_slots[i].end.store((b + size + page - 1) & ~(page - 1), std::memory_order_release);
    g_slots[i].begin.store(b, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_mapping(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  g_slots[slot].begin.store(0, std::memory_order_release);
  g_slots[slot].end.store(0, std::memory_order_release);
}

}  // namespace

FileMapping::FileMapping(int fd, size_t size, bool writable) : size_(size) {
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  void* p = ::mmap(nullptr, size_, prot, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  data_ = static_cast<char*>(p);
  slot_ = register_mapping(data_, size_, prot);
  if (slot_ >= 0) cut_ = &g_slots[slot_].cut;
}

FileMapping::~FileMapping() {
  unregister_mapping(slot_);
  ::munmap(data_, size_);
}

}  // namespace recmod
