#pragma once
// How a command joins a distributed run: `--nproc N` (recmod starts and
// supervises N local ranks), or the environment of torchrun, srun or mpirun
// (dist/launch_env.h); `--dist-backend`, `--dist-timeout`.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include <torch/types.h>

#include "recmod/dist/communicator.h"
#include "recmod/dist/launch_env.h"

namespace recmod::app {

struct DistArgs {
  int nproc = 1;
  std::string backend;  // "" = nccl on CUDA where built, else gloo (dist::choose_backend)
  double timeout_s = 300;
};

void add_dist_options(CLI::App* cmd, DistArgs& args);

/// With --nproc N > 1 in a process that is not one of the ranks: starts the
/// N ranks (this same command line without --nproc) and returns the exit
/// code (the first failing rank's). Otherwise nullopt: run here. The config
/// is checked first, so that a config error is reported once.
/// `device` (--device) is checked with the backend first (an impossible
/// combination is one UsageError here, not one per rank).
std::optional<int> run_as_local_ranks(const DistArgs& args, const std::string& config_path,
                                      const std::vector<std::string>& overrides = {},
                                      const std::string& device = "cpu");

/// This process's place in the run.
struct Joined {
  dist::LaunchEnv env;
  std::shared_ptr<dist::Communicator> comm;
  /// --device for this rank: a CUDA device without an index puts local rank
  /// r of a distributed run on GPU r % (visible GPUs).
  torch::Device device{torch::kCPU};
  std::string backend;  // "gloo" or "nccl"
  bool lead() const { return env.rank == 0; }
};

/// Reads the launch environment, sets the threads (`threads`, or the cores
/// shared among the ranks on this host), and joins the other ranks; checks
/// that every rank runs the same command on the same config (a digest of
/// the config file and the arguments), else DistributedError. The backend
/// follows dist::choose_backend (--dist-backend, `device`); --dist-backend
/// nccl in one process forms a real one-rank NCCL group.
Joined join_run(const DistArgs& args, int threads, const std::string& config_path, const std::string& device = "cpu");

/// The memory a rank may plan its shards into: MemAvailable shared evenly
/// by the ranks on this host (nullopt when unknown).
std::optional<double> memory_per_rank(const Joined& joined);

/// The command line main() was given (argv[1..]).
void set_command_line(int argc, char** argv);

}  // namespace recmod::app
