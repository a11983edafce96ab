#include "recmod/dist/communicator.h"

// ProcessGroupGloo.hpp declares its class only under USE_C10D_GLOO (what
// PyTorch's own build defines); libtorch is built with Gloo on Linux, and
// Debian's libgloo-dev provides the headers it includes.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstring>
#include <exception>

#include "recmod/common/errors.h"

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

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const LaunchEnv& env, const CommunicatorOptions& options)
      : rank_(env.rank), world_size_(env.world_size), timeout_(options.timeout) {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(env.master_port);
    store_options.isServer = env.rank == 0;
    store_options.numWorkers = static_cast<int>(env.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    const std::string where = str_cat(env.master_addr, ":", env.master_port);
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
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
    auto gloo = c10d::ProcessGroupGloo::Options::create();
    gloo->timeout = options.timeout;
    // The interface whose address reaches MASTER_ADDR's network; on one host
    // (the tests) the loopback.
    const bool local = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
    gloo->devices.push_back(local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                  : c10d::ProcessGroupGloo::createDefaultDevice());
    try {
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(env.rank),
                                                           static_cast<int>(env.world_size), gloo);
    } catch (const std::exception& e) {
      throw DistributedError(str_cat("rank ", env.rank, ": the process group over ", where,
                                     " did not form within ", options.timeout.count() / 1000.0, " s: ",
                                     first_line(message_of(e)), "; did every one of the ", env.world_size,
                                     " ranks start (WORLD_SIZE)?"));
    }
  }

  int64_t rank() const override { return rank_; }
  int64_t world_size() const override { return world_size_; }

  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    int64_t bytes = 0;
    for (const auto& t : tensors) bytes += static_cast<int64_t>(t.nbytes());
    traffic_.all_reduce_bytes += 2 * 2 * bytes * (world_size_ - 1) / world_size_;
    run("all_reduce", [&] { return group_->allreduce(tensors); });
  }

  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override {
    TORCH_CHECK(static_cast<int64_t>(send_rows.size()) == world_size_ && static_cast<int64_t>(recv_rows.size()) == world_size_,
                "all_to_all: one split per rank expected");
    auto sizes = input.sizes().vec();
    int64_t total = 0;
    for (int64_t r : recv_rows) total += r;
    sizes[0] = total;
    torch::Tensor output = torch::empty(sizes, input.options());
    torch::Tensor in = input.contiguous();
    std::vector<int64_t> out_splits = recv_rows, in_splits = send_rows;
    int64_t row_bytes = static_cast<int64_t>(input.element_size());
    for (int64_t d = 1; d < input.dim(); ++d) row_bytes *= input.size(d);
    for (int64_t r = 0; r < world_size_; ++r)
      if (r != rank_)
        traffic_.all_to_all_bytes += (send_rows[static_cast<size_t>(r)] + recv_rows[static_cast<size_t>(r)]) * row_bytes;
    run("all_to_all", [&] { return group_->alltoall_base(output, in, out_splits, in_splits); });
    return output;
  }

  std::vector<int64_t> all_gather(int64_t value) override {
    std::vector<torch::Tensor> input{torch::tensor({value}, torch::kLong)};
    traffic_.other_bytes += 2 * 8 * (world_size_ - 1);
    std::vector<std::vector<torch::Tensor>> output(1);
    for (int64_t r = 0; r < world_size_; ++r) output[0].push_back(torch::empty({1}, torch::kLong));
    run("all_gather", [&] { return group_->allgather(output, input); });
    std::vector<int64_t> values;
    for (const auto& t : output[0]) values.push_back(t.item<int64_t>());
    return values;
  }

  void broadcast(torch::Tensor& tensor, int64_t root) override {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    run("broadcast", [&] { return group_->broadcast(tensors, options); });
  }

  void send(const torch::Tensor& tensor, int64_t to) override {
    std::vector<torch::Tensor> tensors{tensor.contiguous()};
    run("send", [&] { return group_->send(tensors, static_cast<int>(to), 0); });
  }

  void recv(torch::Tensor& tensor, int64_t from) override {
    TORCH_CHECK(tensor.is_contiguous(), "recv into a non-contiguous tensor");
    std::vector<torch::Tensor> tensors{tensor};
    run("recv", [&] { return group_->recv(tensors, static_cast<int>(from), 0); });
  }

  void barrier() override {
    run("barrier", [&] { return group_->barrier(); });
  }

 private:
  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  // Starts a collective and waits for it; a lost peer or a timeout becomes a
  // DistributedError that says so.
  template <typename Start>
  void run(const char* what, Start&& start) {
    ++traffic_.collectives;
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      throw DistributedError(str_cat("rank ", rank_, ": ", what, " with the other ranks failed: ",
                                     first_line(message_of(e)),
                                     " (another rank exited or stalled; its own message says why)"));
    }
  }

  int64_t rank_;
  int64_t world_size_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::shared_ptr<Communicator> single_process() { return std::make_shared<SingleProcess>(); }

std::shared_ptr<Communicator> connect(const LaunchEnv& env, const CommunicatorOptions& options) {
  if (env.world_size <= 1) return single_process();
  if (options.backend != "gloo")
    throw UsageError(str_cat("--dist-backend ", options.backend, ": this build has the gloo backend only (CPU)"));
  return std::make_shared<GlooCommunicator>(env, options);
}

}  // namespace recmod::dist
