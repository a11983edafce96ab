#pragma once
// The Communicator over one c10d process group (ProcessGroupGloo, or
// ProcessGroupNCCL where built): shared by communicator.cpp and
// nccl_communicator.cpp. Each collective runs on the group's device: a
// tensor elsewhere (or not contiguous) is copied there, and the result back
// (Gloo: CPU tensors, so a CUDA tensor goes through the host; NCCL: this
// rank's GPU, so a CPU tensor goes through the GPU). Tensors already on the
// group's device and contiguous are used in place, as before.
#include <c10/core/DeviceGuard.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/lost_peer.h"

namespace recmod::dist::detail {

std::string message_of(const std::exception& e);
std::string first_line(const std::string& text);

template <typename Group>
class ProcessGroupCommunicator final : public Communicator {
 public:
  /// `barrier_by_all_reduce`: a barrier is a one-element all-reduce on the
  /// group's device (NCCL's own barrier guesses the device).
  ProcessGroupCommunicator(int64_t rank, int64_t world_size, std::chrono::milliseconds timeout, torch::Device device,
                           c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<Group> group,
                           bool barrier_by_all_reduce)
      : rank_(rank),
        world_size_(world_size),
        timeout_(timeout),
        device_(device),
        barrier_by_all_reduce_(barrier_by_all_reduce),
        store_(std::move(store)),
        group_(std::move(group)) {}

  int64_t rank() const override { return rank_; }
  int64_t world_size() const override { return world_size_; }

  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    int64_t bytes = 0;
    for (const auto& t : tensors) bytes += static_cast<int64_t>(t.nbytes());
    traffic_.all_reduce_bytes += 2 * 2 * bytes * (world_size_ - 1) / world_size_;
    std::vector<torch::Tensor> staged = stage(tensors);
    run("all_reduce", [&] { return group_->allreduce(staged); });
    unstage(staged, tensors);
  }

  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override {
    TORCH_CHECK(static_cast<int64_t>(send_rows.size()) == world_size_ && static_cast<int64_t>(recv_rows.size()) == world_size_,
                "all_to_all: one split per rank expected");
    auto sizes = input.sizes().vec();
    int64_t total = 0;
    for (int64_t r : recv_rows) total += r;
    sizes[0] = total;
    torch::Tensor in = input.to(device_).contiguous();
    torch::Tensor output = torch::empty(sizes, in.options());
    std::vector<int64_t> out_splits = recv_rows, in_splits = send_rows;
    int64_t row_bytes = static_cast<int64_t>(input.element_size());
    for (int64_t d = 1; d < input.dim(); ++d) row_bytes *= input.size(d);
    for (int64_t r = 0; r < world_size_; ++r)
      if (r != rank_)
        traffic_.all_to_all_bytes += (send_rows[static_cast<size_t>(r)] + recv_rows[static_cast<size_t>(r)]) * row_bytes;
    run("all_to_all", [&] { return group_->alltoall_base(output, in, out_splits, in_splits); });
    return output.device() == input.device() ? output : output.to(input.device());
  }

  std::vector<int64_t> all_gather(int64_t value) override {
    const auto on = torch::TensorOptions().dtype(torch::kLong).device(device_);
    std::vector<torch::Tensor> input{torch::full({1}, value, on)};
    traffic_.other_bytes += 2 * 8 * (world_size_ - 1);
    std::vector<std::vector<torch::Tensor>> output(1);
    for (int64_t r = 0; r < world_size_; ++r) output[0].push_back(torch::empty({1}, on));
    run("all_gather", [&] { return group_->allgather(output, input); });
    std::vector<int64_t> values;
    for (const auto& t : output[0]) values.push_back(t.item<int64_t>());
    return values;
  }

  void broadcast(torch::Tensor& tensor, int64_t root) override {
    std::vector<torch::Tensor> tensors{tensor};
    std::vector<torch::Tensor> staged = stage(tensors);
    c10d::BroadcastOptions options;
    options.rootRank = root;
    run("broadcast", [&] { return group_->broadcast(staged, options); });
    unstage(staged, tensors);
  }

  void send(const torch::Tensor& tensor, int64_t to) override {
    std::vector<torch::Tensor> tensors{tensor.to(device_).contiguous()};
    run("send", [&] { return group_->send(tensors, static_cast<int>(to), 0); });
  }

  void recv(torch::Tensor& tensor, int64_t from) override {
    TORCH_CHECK(tensor.is_contiguous(), "recv into a non-contiguous tensor");
    std::vector<torch::Tensor> tensors{tensor};
    std::vector<torch::Tensor> staged = stage(tensors);
    run("recv", [&] { return group_->recv(staged, static_cast<int>(from), 0); });
    unstage(staged, tensors);
  }

  void barrier() override {
    if (barrier_by_all_reduce_) {
      std::vector<torch::Tensor> one{torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat).device(device_))};
      run("barrier", [&] { return group_->allreduce(one); });
      return;
    }
    run("barrier", [&] { return group_->barrier(); });
  }

 private:
  bool needs_copy(const torch::Tensor& t) const { return t.device() != device_ || !t.is_contiguous(); }

  // The tensors on the group's device, contiguous (the same tensors when
  // they are already).
  std::vector<torch::Tensor> stage(const std::vector<torch::Tensor>& tensors) const {
    std::vector<torch::Tensor> staged;
    staged.reserve(tensors.size());
    for (const auto& t : tensors) staged.push_back(needs_copy(t) ? t.to(device_).contiguous() : t);
    return staged;
  }
  void unstage(const std::vector<torch::Tensor>& staged, std::vector<torch::Tensor>& tensors) const {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (!staged[i].is_same(tensors[i])) tensors[i].copy_(staged[i]);
  }

  // Starts a collective and waits for it; a lost peer or a timeout becomes a
  // DistributedError that says so.
  template <typename Start>
  void run(const char* what, Start&& start) {
    ++traffic_.collectives;
    std::optional<c10::DeviceGuard> on_device;
    if (device_.is_cuda()) on_device.emplace(device_);
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      throw DistributedError(str_cat("rank ", rank_, ": ", what, " with the other ranks failed: ",
                                     first_line(message_of(e)),
                                     " (", kLostPeerNote, ")"));
    }
  }

  int64_t rank_;
  int64_t world_size_;
  std::chrono::milliseconds timeout_;
  torch::Device device_;
  bool barrier_by_all_reduce_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Group> group_;
};

}  // namespace recmod::dist::detail
