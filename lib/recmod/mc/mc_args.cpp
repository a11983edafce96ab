#include "recmod/mc/mc_args.h"

#include "recmod/common/errors.h"

namespace recmod {

MCHManagedCollisionModuleOptions mch_options_from(const ModuleArgs& args, MchFunctions functions,
                                                  std::optional<int64_t> num_embeddings) {
  const int64_t mch_size = args.positive_int("mch_size", 0);
  // A table's rows: zch_size rows with an id of their own (the last one the
  // overflow row) and mch_size rows that the remaining ids are hashed into
  // (TorchRec's residual hashing).
  const int64_t zch_size =
      num_embeddings ? args.positive_int("zch_size", *num_embeddings - mch_size) : args.positive_int("zch_size");
  if (num_embeddings && zch_size + mch_size != *num_embeddings)
    args.fail("zch_size", mch_size ? str_cat("zch_size + mch_size must equal the table's num_embeddings ",
                                             *num_embeddings, ", got ", zch_size, " + ", mch_size)
                                   : str_cat("must equal the table's num_embeddings ", *num_embeddings, ", got ",
                                             zch_size, " (or add mch_size: the rows that other ids are hashed into)"));
  MCHManagedCollisionModuleOptions options(zch_size, std::move(functions.eviction_policy),
                                           args.positive_int("eviction_interval", 1));
  if (args.has("input_hash_size")) options.input_hash_size(static_cast<uint64_t>(args.positive_int("input_hash_size")));
  options.input_hash_func(functions.input_hash_func);
  if (mch_size) {
    options.mch_size(mch_size);
    if (!functions.mch_hash_func) args.fail("mch_size", "needs mch_hash_func (the residual rows' hash)");
    options.mch_hash_func(functions.mch_hash_func);
  } else if (functions.mch_hash_func) {
    args.fail("mch_hash_func", "only applies with mch_size");
  }
  if (args.has("output_global_offset")) {
    const int64_t offset = args.get_int("output_global_offset");
    if (offset < 0) args.fail("output_global_offset", str_cat("must be >= 0, got ", offset));
    options.output_global_offset(offset);
  }
  return options;
}

}  // namespace recmod
