#pragma once
// The ranks of a distributed run talking to each other, over PyTorch's own
// c10d (torch/csrc/distributed/c10d): a TCPStore at MASTER_ADDR:MASTER_PORT
// for the rendezvous and ProcessGroupGloo for the collectives (CPU tensors),
// or ProcessGroupNCCL (CUDA tensors on this rank's GPU) in a build with NCCL.
// Tensors given on another device are copied to the backend's and back.
// Every collective is called by every rank in the same order; a peer that
// dies or a collective that outlives `timeout` becomes a DistributedError on
// every surviving rank (no hang).
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recmod/dist/launch_env.h"

namespace recmod::dist {

struct CommunicatorOptions {
  /// Rendezvous and every collective: how long a rank waits for the others.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  /// "gloo" (CPU tensors) or "nccl" (CUDA tensors; only where nccl_built()).
  /// dist::choose_backend picks it from --dist-backend and --device.
  std::string backend = "gloo";
  /// nccl: this rank's GPU (set as the current CUDA device before the group
  /// forms).
  int device_index = 0;
  /// One process (WORLD_SIZE 1): a real process group of one rank over an
  /// in-memory store instead of the identity, so that the backend's own
  /// collectives run (recmod ... --dist-backend nccl without --nproc).
  bool group_of_one = false;
};

/// Whether this build has the NCCL backend (a CUDA libtorch whose
/// ProcessGroupNCCL compiled in CMake's configure-time check).
bool nccl_built();

/// Bytes this rank exchanged with the other ranks (sent + received; its
/// traffic with itself is not counted), to compare with the planner's
/// estimates. All-reduce bytes are the ring algorithm's 2 (W - 1) / W of the
/// buffer each way.
struct Traffic {
  int64_t all_to_all_bytes = 0;
  int64_t all_reduce_bytes = 0;
  int64_t other_bytes = 0;  // all-gather, broadcast, send/recv
  int64_t collectives = 0;  // calls of any kind (each one a round of waiting for the others)
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  const Traffic& traffic() const { return traffic_; }
  virtual int64_t rank() const = 0;
  virtual int64_t world_size() const = 0;

  /// In place: every tensor becomes the elementwise sum over the ranks.
  virtual void all_reduce_sum(std::vector<torch::Tensor>& tensors) = 0;
  /// Splits `input` along dim 0 into world_size parts of send_rows[i] rows,
  /// sends part i to rank i, and returns what every rank sent here,
  /// concatenated in rank order (recv_rows[i] rows from rank i). Rows are
  /// the trailing dims of `input`, which must be contiguous.
  virtual torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows) = 0;
  /// One int64 per rank, gathered everywhere (rank order).
  virtual std::vector<int64_t> all_gather(int64_t value) = 0;
  /// `tensor` (same shape everywhere) takes rank `root`'s values.
  virtual void broadcast(torch::Tensor& tensor, int64_t root) = 0;
  /// Point to point; `tensor` must be contiguous, same shape on both sides.
  virtual void send(const torch::Tensor& tensor, int64_t to) = 0;
  virtual void recv(torch::Tensor& tensor, int64_t from) = 0;
  virtual void barrier() = 0;

  /// Throws DistributedError naming the ranks whose `value` differs from
  /// rank 0's (e.g. a config digest: ranks started with different configs).
  void expect_same(const std::string& what, int64_t value);

  /// Every rank's batch size for the step about to run, when the caller
  /// knows them (the trainer splits each global batch by a fixed rule), so
  /// the sharded modules need not ask (`batch_sizes`); {} forgets them.
  void expect_batch_sizes(std::vector<int64_t> sizes) { batch_sizes_ = std::move(sizes); }
  /// The batch sizes set by expect_batch_sizes (checked against `mine`),
  /// else an all_gather of `mine`.
  std::vector<int64_t> batch_sizes(int64_t mine);

 protected:
  Traffic traffic_;

 private:
  std::vector<int64_t> batch_sizes_;
};

/// The one-process run: every collective is the identity.
std::shared_ptr<Communicator> single_process();

/// Rendezvous at env.master_addr:env.master_port (rank 0 hosts the store)
/// and a Gloo or NCCL process group over it (options.backend). DistributedError (with the address and
/// what to check) when the port is taken, the master is unreachable, or the
/// other ranks do not arrive within the timeout. UsageError for a backend
/// this build does not have. One process: single_process(), unless
/// options.group_of_one.
std::shared_ptr<Communicator> connect(const LaunchEnv& env, const CommunicatorOptions& options = {});

}  // namespace recmod::dist
