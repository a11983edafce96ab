#include "commands/distributed_run.h"

#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/memory.h"
#include "recmod/config/model_config.h"
#include "recmod/dist/local_launcher.h"

namespace recmod::app {

namespace {

std::vector<std::string>& command_line() {
  static std::vector<std::string> args;
  return args;
}

int64_t run_digest(const std::string& config_path) {
  std::ifstream in(config_path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  for (const auto& a : dist::args_without_nproc(command_line())) text << '\0' << a;
  // std::hash is the same function in every copy of this binary, which is
  // what the ranks of one run execute.
  return static_cast<int64_t>(std::hash<std::string>{}(text.str()));
}

}  // namespace

std::optional<double> memory_per_rank(const Joined& joined) {
  // Every rank must compute the same plan: all plan with the smallest figure.
  const auto available = available_memory_bytes();
  int64_t least = available ? static_cast<int64_t>(*available) : -1;
  for (int64_t value : joined.comm->all_gather(least)) least = std::min(least, value);
  if (least < 0) return std::nullopt;
  return static_cast<double>(least) / static_cast<double>(std::max<int64_t>(joined.env.local_world_size, 1));
}

void set_command_line(int argc, char** argv) { command_line().assign(argv + 1, argv + argc); }

void add_dist_options(CLI::App* cmd, DistArgs& args) {
  cmd->add_option("--nproc", args.nproc, "Start and supervise this many local ranks (distributed run on this host)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--dist-backend", args.backend, "Collectives backend: gloo (CPU)")->capture_default_str();
  cmd->add_option("--dist-timeout", args.timeout_s,
                  "Seconds a rank waits for the others (rendezvous and each collective)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

std::optional<int> run_as_local_ranks(const DistArgs& args, const std::string& config_path,
                                      const std::vector<std::string>& overrides) {
  if (args.nproc <= 1 || dist::launched_by_recmod()) return std::nullopt;
  if (dist::read_launch_env().distributed())
    throw UsageError(str_cat("--nproc ", args.nproc, " inside a distributed launch (", dist::read_launch_env().source,
                             " set the ranks already); drop --nproc or the launcher"));
  // A config error once, here, rather than once per rank.
  config::load_model_config(config_path, overrides);
  dist::LocalLaunchOptions options;
  options.nproc = args.nproc;
  options.executable = dist::current_executable();
  options.args = dist::args_without_nproc(command_line());
  options.threads_per_rank = std::max(1, default_threads() / args.nproc);
  return dist::run_local_ranks(options, std::cout, std::cerr);
}

Joined join_run(const DistArgs& args, int threads, const std::string& config_path) {
  Joined joined;
  joined.env = dist::read_launch_env();
  if (threads == 0 && joined.env.local_world_size > 1)
    threads = std::max<int>(1, default_threads() / static_cast<int>(joined.env.local_world_size));
  set_threads(threads);
  dist::CommunicatorOptions options;
  options.backend = args.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args.timeout_s * 1000));
  joined.comm = dist::connect(joined.env, options);
  if (joined.comm->world_size() > 1) joined.comm->expect_same("the command line and config file", run_digest(config_path));
  return joined;
}

}  // namespace recmod::app
