// Criteo TSV: every record either parses or is a bad record (InputError with
// kFail; counted with kSkip). Both policies must agree on the good rows.
#include <cstdint>
#include <string_view>

#include "recmod/common/errors.h"
#include "recmod/data/criteo_tsv.h"

using namespace recmod::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CriteoTsvReader skip("fuzz.tsv", text, BadRecordPolicy::kSkip);
  int64_t rows = 0;
  while (auto block = skip.read(3)) {
    block->to_batch();
    rows += block->num_rows();
  }
  if (rows != skip.report().rows_read) __builtin_trap();
  CriteoTsvReader fail("fuzz.tsv", text, BadRecordPolicy::kFail);
  try {
    while (auto batch = fail.read_batch(4)) (void)batch;
  } catch (const recmod::InputError&) {
  }
  return 0;
}
