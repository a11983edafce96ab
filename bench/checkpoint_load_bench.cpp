// Checkpoint loading: time and peak RSS of one way of reading a torch.save
// file, in a process of its own (scripts/bench-checkpoint runs each mode and
// torch.load beside them):
//   checkpoint_load_bench load FILE   io::load_tensors (zip checks, CRC-32 of every record)
//   checkpoint_load_bench map FILE    io::map_tensors (the same checks, the tensors the file's mapped
//                                     pages); also prints the anonymous and file-backed RSS after
//   checkpoint_load_bench read FILE      the floor: the file read into one uninitialised buffer in
//                                        1 MiB preads, as load_tensors reads records
//   checkpoint_load_bench read-crc FILE  the same, with io::crc32 over each piece as it lands (what
//                                        load_tensors does): read-crc minus read is the CRC's cost
//   checkpoint_load_bench crc FILE       io::crc32 alone over the whole file already in memory
// Prints one JSON line: {"mode","seconds","bytes","peak_rss_bytes","rss_before_bytes"}
// (map: also "rss_anon_after_bytes", "rss_file_after_bytes").
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "recmod/io/crc32.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"

namespace {

long long status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(field.size())) * 1024;
  return 0;
}
long long rss_bytes() { return status_bytes("VmRSS:"); }

long long peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<long long>(usage.ru_maxrss) * 1024;
}

/// The file in 1 MiB preads into memory that is not zeroed first (like a
/// tensor's storage); the CRC folded in piece by piece when `crc` is set.
std::unique_ptr<char[]> read_file(const std::string& path, size_t* size, uint32_t* crc) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  struct stat st {};
  ::fstat(fd, &st);
  *size = static_cast<size_t>(st.st_size);
  std::unique_ptr<char[]> bytes(new char[*size]);
  constexpr size_t kPiece = size_t{1} << 20;
  for (size_t done = 0; done < *size;) {
    const ssize_t got = ::pread(fd, bytes.get() + done, std::min(kPiece, *size - done), static_cast<off_t>(done));
    if (got <= 0) break;
    if (crc) *crc = recmod::io::crc32(*crc, bytes.get() + done, static_cast<size_t>(got));
    done += static_cast<size_t>(got);
  }
  ::close(fd);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s load|map|read|read-crc|crc FILE\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], path = argv[2];
  const long long before = rss_bytes();
  const auto start = std::chrono::steady_clock::now();
  size_t bytes = 0;
  uint32_t crc = 0;
  double seconds = 0;
  std::string extra;
  if (mode == "map") {
    const recmod::StateDict state = recmod::io::map_tensors(path);
    for (const auto& [key, tensor] : state) bytes += tensor.nbytes();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    extra = ", \"rss_anon_after_bytes\": " + std::to_string(status_bytes("RssAnon:")) +
            ", \"rss_file_after_bytes\": " + std::to_string(status_bytes("RssFile:"));
  } else if (mode == "load") {
    const recmod::StateDict state = recmod::io::load_tensors(path);
    for (const auto& [key, tensor] : state) bytes += tensor.nbytes();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } else if (mode == "read" || mode == "read-crc") {
    auto data = read_file(path, &bytes, mode == "read-crc" ? &crc : nullptr);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } else if (mode == "crc") {
    auto data = read_file(path, &bytes, nullptr);
    const auto read_done = std::chrono::steady_clock::now();
    crc = recmod::io::crc32(0, data.get(), bytes);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - read_done).count();
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  std::printf("{\"mode\": \"%s\", \"seconds\": %.3f, \"bytes\": %zu, \"peak_rss_bytes\": %lld, \"rss_before_bytes\": %lld%s%s}\n",
              mode.c_str(), seconds, bytes, peak_rss_bytes(), before, extra.c_str(), crc == 1 ? " " : "");
  return 0;
}
