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

}  // namespace recmod::fuzz
