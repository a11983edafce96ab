#include "recmod/data/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "recmod/common/errors.h"

namespace recmod::data {

namespace {

// The mappings the SIGBUS handler may repair; a slot is free when begin == 0.
// Lock-free reads in the handler; taking and freeing slots under a mutex.
struct Slot {
  std::atomic<uintptr_t> begin{0}, end{0};
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
    // Zero pages from the faulting page to the end of the mapping: the read
    // is retried and sees zeros; the reader sees the flag.
    const uintptr_t from = addr & ~(g_page_size - 1);
    void* p = ::mmap(reinterpret_cast<void*>(from), end - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
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
int register_mapping(const char* begin, size_t size) {
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

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_input_error(path_, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_input_error(path_, ": cannot open: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_input_error(path_, ": cannot open: not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw_input_error(path_, ": cannot map: ", std::strerror(err));
    }
    data_ = static_cast<const char*>(p);
    slot_ = register_mapping(data_, size_);
    if (slot_ >= 0) cut_ = &g_slots[slot_].cut;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() {
  unregister_mapping(slot_);
  if (data_) ::munmap(const_cast<char*>(data_), size_);
}

void MappedFile::throw_cut(const std::string& where) const {
  struct stat st {};
  const std::string now = ::stat(path_.c_str(), &st) == 0 ? str_cat(", now ", st.st_size) : "";
  throw_input_error(path_, where, ": the file was cut short while being read (", size_, " bytes when opened", now,
                    "); was it truncated or rewritten in place by another program? (replace files by renaming a "
                    "new one over them)");
}

void MappedFile::advise_sequential() const {
  if (data_) ::madvise(const_cast<char*>(data_), size_, MADV_SEQUENTIAL);
}

}  // namespace recmod::data
