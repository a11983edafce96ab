#include "recmod/train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "recmod/common/errors.h"
#include "recmod/io/atomic_file.h"

namespace recmod::train {

namespace fs = std::filesystem;

namespace {

/// An exclusive flock on `lock_path`, or a UsageError naming its holder.
std::shared_ptr<const int> lock_run(const std::string& run, const std::string& lock_path) {
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(str_cat(lock_path, ": cannot create the run's lock file: ", std::strerror(errno)));
  int rc;
  while ((rc = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (rc != 0) {
    const int error = errno;
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    ::close(fd);
    std::string holder(text, n > 0 ? static_cast<size_t>(n) : 0);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
    if (error != EWOULDBLOCK) throw InputError(str_cat(lock_path, ": cannot lock the run directory: ", std::strerror(error)));
    throw UsageError(str_cat(run, " is in use by another recmod run", holder.empty() ? "" : " (pid " + holder + ")",
                             ", which holds ", lock_path, "; wait for it to end, or choose another --out"));
  }
  // The holder's pid, for the message above (a hint only: the flock is the lock).
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The lock holds without the hint.
  }
  return std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
}

}  // namespace

RunDir::RunDir(std::string path, bool resume) : path_(std::move(path)) {
  std::error_code ec;
  fs::create_directories(path_, ec);
  if (ec) throw InputError(str_cat(path_, ": cannot create the run directory: ", ec.message()));
  lock_ = lock_run(path_, lock_path());
  if (!resume && has_checkpoint())
    throw UsageError(str_cat(path_, " already holds a checkpoint; pass --resume to continue that run, or choose another --out"));
  if (resume && !has_checkpoint())
    throw UsageError(str_cat(path_, " holds no checkpoint (model.pt and trainer_state.pt) to resume; drop --resume to start a new run"));
  if (resume) drop_torn_metrics_line();
}

void RunDir::drop_torn_metrics_line() const {
  // A run killed in the middle of an append can leave a last line without
  // its newline; appending after it would glue two records together.
  std::error_code ec;
  const auto size = fs::file_size(metrics_path(), ec);
  if (ec || size == 0) return;
  std::ifstream in(metrics_path(), std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.back() == '\n') return;
  const auto last_newline = text.rfind('\n');
  fs::resize_file(metrics_path(), last_newline == std::string::npos ? 0 : last_newline + 1, ec);
  if (ec) throw InputError(str_cat(metrics_path(), ": cannot drop the torn last line: ", ec.message()));
}

RunDir RunDir::attach(std::string path) {
  RunDir run;
  run.path_ = std::move(path);
  return run;
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

void RunDir::save_config_text(const std::string& text) const { io::write_file_atomically(config_path(), text); }

void RunDir::save_vocabularies(const std::vector<std::string>& files) const {
  std::vector<std::string> names;
  for (const auto& file : files) {
    const std::string name = fs::path(file).filename().string();
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == name)
        throw UsageError(str_cat("the config's vocabulary files ", files[i], " and ", file, " share the name '", name,
                                 "'; the run keeps its copies by name in ", vocab_dir(),
                                 ": give them different file names"));
    names.push_back(name);
  }
  std::error_code ec;
  for (const auto& file : files) {
    const fs::path copy = fs::path(vocab_dir()) / fs::path(file).filename();
    if (fs::exists(copy, ec) && fs::equivalent(copy, file, ec)) continue;  // resuming: already the run's copy
    std::ifstream in(file, std::ios::binary);
    if (!in) throw InputError(str_cat(file, ": cannot read the vocabulary file to keep it in the run"));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw InputError(str_cat(file, ": read failed"));
    fs::create_directories(vocab_dir(), ec);
    if (ec) throw InputError(str_cat(vocab_dir(), ": cannot create: ", ec.message()));
    io::write_file_atomically(copy.string(), text);
  }
}

}  // namespace recmod::train
