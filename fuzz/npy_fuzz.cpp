// TorchRec's Criteo .npy days: the input is three files joined by
// kNpySeparator (dense, sparse, labels); open them (every header check) and
// read every row.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "recmod/common/errors.h"
#include "recmod/data/criteo_npy.h"

using namespace recmod::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string parts[3];
  size_t begin = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? input.find(recmod::fuzz::kNpySeparator, begin) : std::string::npos;
    parts[i] = input.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    if (end == std::string::npos) {
      begin = input.size();
    } else {
      begin = end + recmod::fuzz::kNpySeparator.size();
    }
  }
  const char* suffixes[] = {"_dense.npy", "_sparse.npy", "_labels.npy"};
  std::string prefix;
  for (int i = 0; i < 3; ++i) {
    const std::string path = recmod::fuzz::write_scratch_named(parts[i], suffixes[i]);
    prefix = path.substr(0, path.size() - std::string(suffixes[i]).size());
  }
  try {
    CriteoNpyReader reader(prefix);
    while (auto block = reader.read(3)) block->to_batch();
  } catch (const recmod::InputError&) {
  }
  return 0;
}
