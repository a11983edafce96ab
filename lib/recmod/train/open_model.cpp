#include "recmod/train/open_model.h"

#include "recmod/data/open_reader.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/trainer.h"

namespace recmod::train {

OpenedModel open_model(const std::string& config_path, const std::string& checkpoint) {
  OpenedModel out;
  out.config = config::load_model_config(config_path);
  seed_everything(out.config.training.seed);
  if (checkpoint.empty()) {
    out.model = config::ModelGraph(static_cast<const config::ModelSpec&>(out.config));
    return out;
  }
  // The checkpoint overwrites every table: build them deferred and allocate
  // them undrawn (no random init of what is loaded next; eval of a large
  // model starts in the time it takes to read it).
  {
    DeferTableAllocation defer(/*whole=*/true);
    out.model = config::ModelGraph(static_cast<const config::ModelSpec&>(out.config));
  }
  materialize_deferred_tables(*out.model, /*draw=*/false);
  load_model(out.model, checkpoint);
  return out;
}

OpenedModel open_model_deferred(const std::string& config_path) {
  DeferTableAllocation defer;
  return open_model(config_path);
}

std::unique_ptr<data::BatchSource> open_batches(const OpenedModel& opened, const std::string& path,
                                                const DataOptions& options, int64_t epoch) {
  data::ReadOptions read;
  read.format = options.format.empty() ? opened.config.data.format : options.format;
  read.batch_size = options.batch_size > 0 ? options.batch_size : opened.config.training.batch_size;
  read.shuffle = options.shuffle;
  read.seed = options.seed;
  auto source = data::open_batches(path, read, opened.model->schema(), epoch);
  opened.model->check_schema(source->schema(), path);
  return source;
}

}  // namespace recmod::train
