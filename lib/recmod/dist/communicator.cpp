#include "recmod/dist/communicator.h"

// ProcessGroupGloo.hpp declares its class only under USE_C10D_GLOO (what
// PyTorch's own build defines); libtorch is built with Gloo on Linux, and
// Debian's libgloo-dev provides the headers it includes.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstring>
#include <exception>

#include "recmod/common/errors.h"
#include "recmod/dist/process_group_communicator.h"
#ifdef RECMOD_WITH_NCCL
#include "recmod/dist/nccl_communicator.h"
#endif

namespace recmod::dist {

std::vector<int64_t> Communicator::batch_sizes(int64_t mine) {
  if (batch_sizes_.empty()) return all_gather(mine);
  TORCH_CHECK(static_cast<int64_t>(batch_sizes_.size()) == world_size() && batch_sizes_[static_cast<size_t>(rank())] == mine,
              "Communicator: the expected batch sizes do not include this rank's ", mine);
  return batch_sizes_;
}

void Communicator::expect_same(const std::string& what, int64_t value) {
  const std::vector<int64_t> values = all_gather(value);
  std::vector<std::string> differ;
  for (size_t r = 1; r < values.size(); ++r)
    if (values[r] != values[0]) differ.push_back(std::to_string(r));
  if (!differ.empty())
    throw DistributedError(str_cat("the ranks disagree on ", what, ": rank(s) ", join_names(differ),
                                   " differ from rank 0; start every rank with the same arguments and files"));
}

namespace {

class SingleProcess final : public Communicator {
 public:
  int64_t rank() const override { return 0; }
  int64_t world_size() const override { return 1; }
  void all_reduce_sum(std::vector<torch::Tensor>&) override {}
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>&,
                           const std::vector<int64_t>&) override {
    return input.clone();
  }
  std::vector<int64_t> all_gather(int64_t value) override { return {value}; }
  void broadcast(torch::Tensor&, int64_t) override {}
  void send(const torch::Tensor&, int64_t) override { TORCH_CHECK(false, "send to self in a one-process run"); }
  void recv(torch::Tensor&, int64_t) override { TORCH_CHECK(false, "recv from self in a one-process run"); }
  void barrier() override {}
};

}  // namespace

namespace detail {

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace detail

namespace {

using detail::first_line;
using detail::message_of;

// The TCPStore every rank meets at (rank 0 hosts it); one process alone
// (group_of_one) uses an in-memory store.
c10::intrusive_ptr<c10d::Store> rendezvous(const LaunchEnv& env, const CommunicatorOptions& options) {
  if (env.world_size <= 1) return c10::make_intrusive<c10d::HashStore>();
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0;
  store_options.numWorkers = static_cast<int>(env.world_size);
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  const std::string where = str_cat(env.master_addr, ":", env.master_port);
  try {
    return c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    const std::string why = message_of(e);
    if (env.rank == 0)
      throw DistributedError(str_cat("rank 0 cannot host the rendezvous at ", where,
                                     " (MASTER_ADDR:MASTER_PORT): ", first_line(why),
                                     "; is the port in use? pick another MASTER_PORT"));
    throw DistributedError(str_cat("rank ", env.rank, " cannot reach the rendezvous at ", where,
                                   " (MASTER_ADDR:MASTER_PORT) within ", options.timeout.count() / 1000.0,
                                   " s: ", first_line(why), "; check that rank 0 runs and the address is reachable"));
  }
}

std::shared_ptr<Communicator> gloo_communicator(const LaunchEnv& env, const CommunicatorOptions& options) {
  auto store = rendezvous(env, options);
  auto gloo = c10d::ProcessGroupGloo::Options::create();
  gloo->timeout = options.timeout;
  // The interface whose address reaches MASTER_ADDR's network; on one host
  // (the tests) the loopback.
  const bool local = env.world_size <= 1 || env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
  gloo->devices.push_back(local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                : c10d::ProcessGroupGloo::createDefaultDevice());
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  try {
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(env.rank),
                                                        static_cast<int>(env.world_size), gloo);
  } catch (const std::exception& e) {
    throw DistributedError(str_cat("rank ", env.rank, ": the process group over ", env.master_addr, ":",
                                   env.master_port, " did not form within ", options.timeout.count() / 1000.0,
                                   " s: ", first_line(message_of(e)), "; did every one of the ", env.world_size,
                                   " ranks start (WORLD_SIZE)?"));
  }
  return std::make_shared<detail::ProcessGroupCommunicator<c10d::ProcessGroupGloo>>(
      env.rank, env.world_size, options.timeout, torch::Device(torch::kCPU), store, group,
      /*barrier_by_all_reduce=*/false);
}

}  // namespace

std::shared_ptr<Communicator> single_process() { return std::make_shared<SingleProcess>(); }

bool nccl_built() {
#ifdef RECMOD_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Communicator> connect(const LaunchEnv& env, const CommunicatorOptions& options) {
  if (env.world_size <= 1 && !options.group_of_one) return single_process();
  if (options.backend == "gloo") return gloo_communicator(env, options);
  if (options.backend != "nccl")
    throw UsageError(str_cat("--dist-backend ", options.backend, ": unknown backend; valid: gloo, nccl"));
#ifdef RECMOD_WITH_NCCL
  return detail::nccl_communicator(env, options, rendezvous(env, options));
#else
  throw UsageError("--dist-backend nccl: this build of recmod has no NCCL (it needs a CUDA libtorch with NCCL); "
                   "use --dist-backend gloo");
#endif
}

}  // namespace recmod::dist
