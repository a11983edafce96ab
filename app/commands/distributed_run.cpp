#include "commands/distributed_run.h"

#include <torch/cuda.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/memory.h"
#include "recmod/config/model_config.h"
#include "recmod/dist/backend_choice.h"
#include "recmod/dist/local_launcher.h"

namespace recmod::app {

namespace {

std::vector<std::string>& command_line() {
  static std::vector<std::string> args;
  return args;
}

dist::BackendChoice backend_for(const DistArgs& args, const std::string& device_name, const dist::LaunchEnv& env) {
  const torch::Device parsed = parse_device(device_name);
  dist::BackendRequest request;
  request.requested = args.backend;
  request.cuda = parsed.is_cuda();
  request.device_index = device_name.rfind("cuda:", 0) == 0 ? parsed.index() : -1;
  request.distributed = env.distributed();
  request.local_rank = env.local_rank;
  request.local_world_size = env.local_world_size;
  request.visible_gpus = parsed.is_cuda() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  request.nccl_built = dist::nccl_built();
  return dist::choose_backend(request);
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
  cmd->add_option("--dist-backend", args.backend,
                  "Collectives backend: gloo (CPU or CUDA tensors through the host) or nccl (CUDA, one GPU per rank; "
                  "builds with a CUDA libtorch). Default: nccl with --device cuda where built, else gloo");
  cmd->add_option("--dist-timeout", args.timeout_s,
                  "Seconds a rank waits for the others (rendezvous and each collective)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

std::optional<int> run_as_local_ranks(const DistArgs& args, const std::string& config_path,
                                      const std::vector<std::string>& overrides, const std::string& device) {
  if (args.nproc <= 1 || dist::launched_by_recmod()) return std::nullopt;
  if (dist::read_launch_env().distributed())
    throw UsageError(str_cat("--nproc ", args.nproc, " inside a distributed launch (", dist::read_launch_env().source,
                             " set the ranks already); drop --nproc or the launcher"));
  // A config error once, here, rather than once per rank.
  config::load_model_config(config_path, overrides);
  dist::LaunchEnv ranks;
  ranks.world_size = ranks.local_world_size = args.nproc;
  backend_for(args, device, ranks);  // --dist-backend nccl on too few GPUs: one message, no ranks started
  dist::LocalLaunchOptions options;
  options.nproc = args.nproc;
  options.executable = dist::current_executable();
  options.args = dist::args_without_nproc(command_line());
  options.threads_per_rank = std::max(1, default_threads() / args.nproc);
  return dist::run_local_ranks(options, std::cout, std::cerr);
}

Joined join_run(const DistArgs& args, int threads, const std::string& config_path, const std::string& device) {
  Joined joined;
  joined.env = dist::read_launch_env();
  if (threads == 0 && joined.env.local_world_size > 1)
    threads = std::max<int>(1, default_threads() / static_cast<int>(joined.env.local_world_size));
  set_threads(threads);
  const dist::BackendChoice choice = backend_for(args, device, joined.env);
  joined.backend = choice.backend;
  joined.device = parse_device(device);
  if (joined.env.distributed() && choice.device_index >= 0)
    joined.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(choice.device_index));
  dist::CommunicatorOptions options;
  options.backend = choice.backend;
  options.device_index = std::max(choice.device_index, 0);
  options.group_of_one = !joined.env.distributed() && args.backend == "nccl";
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args.timeout_s * 1000));
  joined.comm = dist::connect(joined.env, options);
  if (joined.comm->world_size() > 1) joined.comm->expect_same("the command line and config file", run_digest(config_path));
  return joined;
}

}  // namespace recmod::app
