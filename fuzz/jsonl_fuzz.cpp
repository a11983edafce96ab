// JSON lines under a small schema (the first byte picks weighted or not).
#include <cstdint>
#include <string_view>

#include "recmod/common/errors.h"
#include "recmod/data/jsonl.h"

using namespace recmod::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  DataSchema schema;
  schema.num_dense = 2;
  schema.sparse_features = {"f1", "f2"};
  schema.num_labels = 1 + (data[0] & 1);
  schema.weighted = (data[0] & 2) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  JsonlReader skip("fuzz.jsonl", text, schema, BadRecordPolicy::kSkip);
  while (auto block = skip.read(3)) block->to_batch();
  JsonlReader fail("fuzz.jsonl", text, schema, BadRecordPolicy::kFail);
  try {
    while (auto batch = fail.read_batch(2)) (void)batch;
  } catch (const recmod::InputError&) {
  }
  return 0;
}
