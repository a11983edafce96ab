#include "recmod/train/run_dir.h"

#include <filesystem>
#include <fstream>

#include "recmod/common/errors.h"

namespace recmod::train {

namespace fs = std::filesystem;

RunDir::RunDir(std::string path, bool resume) : path_(std::move(path)) {
  std::error_code ec;
  fs::create_directories(path_, ec);
  if (ec) throw InputError(str_cat(path_, ": cannot create the run directory: ", ec.message()));
  if (!resume && has_checkpoint())
    throw UsageError(str_cat(path_, " already holds a checkpoint; pass --resume to continue that run, or choose another --out"));
  if (resume && !has_checkpoint())
    throw UsageError(str_cat(path_, " holds no checkpoint (model.pt and trainer_state.pt) to resume; drop --resume to start a new run"));
}

bool RunDir::has_checkpoint() const { return fs::exists(model_path()) && fs::exists(trainer_state_path()); }

void RunDir::append_metrics(const std::string& json_line) const {
  std::ofstream out(metrics_path(), std::ios::app);
  out << json_line << "\n";
  out.flush();
  if (!out) throw InputError(str_cat(metrics_path(), ": cannot append metrics (disk full or read-only?)"));
}

void RunDir::save_config(const std::string& config_file) const {
  std::error_code ec;
  fs::copy_file(config_file, config_path(), fs::copy_options::overwrite_existing, ec);
  if (ec) throw InputError(str_cat(config_path(), ": cannot copy the config: ", ec.message()));
}

}  // namespace recmod::train
