// recmod's binary format (.rmb): open (all header checks), then read every
// row both ways (read -> ExampleColumns, read_batch -> Batch).
#include <cstdint>

#include "fuzz_util.h"
#include "recmod/common/errors.h"
#include "recmod/data/binary_format.h"

using namespace recmod::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = recmod::fuzz::write_scratch(data, size, ".rmb");
  try {
    BinaryReader a(path);
    while (auto block = a.read(3)) block->to_batch();
    BinaryReader b(path);
    while (auto batch = b.read_batch(2)) (void)batch;
  } catch (const recmod::InputError&) {
  }
  return 0;
}
