#pragma once
// Helpers shared by the fuzz targets.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace recmod::fuzz {

/// A per-process scratch file holding the input, for readers that take a
/// path (BinaryReader maps its file; load_tensors reads one).
inline std::string write_scratch(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string path = "/tmp/recmod_fuzz_" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

/// `text` into /tmp/recmod_fuzz_<pid><suffix> (one file per suffix).
inline std::string write_scratch_named(const std::string& text, const std::string& suffix) {
  const std::string path = "/tmp/recmod_fuzz_" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), f) != text.size()) std::abort();
  std::fclose(f);
  return path;
}

/// fuzz_npy's input: the dense, sparse and labels .npy files joined by this.
inline const std::string kNpySeparator = "\n--npy--\n";

}  // namespace recmod::fuzz
