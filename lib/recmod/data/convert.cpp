#include "recmod/data/convert.h"

#include "recmod/data/binary_format.h"
#include "recmod/data/criteo_npy.h"

namespace recmod::data {

ReadReport convert_to_binary(const std::string& input, const std::string& output, const ConvertOptions& options) {
  auto reader =
      open_reader(input, options.input_format, options.schema, options.on_bad_record, options.columns, options.jsonl);
  BinaryWriter writer(output, reader->schema());
  while (auto block = reader->read(options.block_rows)) writer.write(*block);
  writer.close();
  return reader->report();
}

ReadReport convert_to_criteo_npy(const std::string& input, const std::string& output, const ConvertOptions& options) {
  auto reader =
      open_reader(input, options.input_format, options.schema, options.on_bad_record, options.columns, options.jsonl);
  ExampleColumns all(reader->schema());
  while (auto block = reader->read(options.block_rows)) all.append(*block);
  write_criteo_npy(output, all);
  return reader->report();
}

}  // namespace recmod::data
