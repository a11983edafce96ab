#include "recmod/data/convert.h"

#include "recmod/data/binary_format.h"

namespace recmod::data {

ReadReport convert_to_binary(const std::string& input, const std::string& output, const ConvertOptions& options) {
  auto reader =
      open_reader(input, options.input_format, options.schema, options.on_bad_record, options.columns, options.jsonl);
  BinaryWriter writer(output, reader->schema());
  while (auto block = reader->read(options.block_rows)) writer.write(*block);
  writer.close();
  return reader->report();
}

}  // namespace recmod::data
