#pragma once
// A captured CUDA graph of work issued from the host, replayed as one
// launch (libtorch's at::cuda::CUDAGraph, which routes the capture's
// allocations to a private memory pool that stays valid across replays).
// The interface is plain C++, so the CPU-only build compiles its callers
// (train/graph_step.cpp) unchanged: cuda_graph.cpp holds the real code
// under RECMOD_CUDA_KERNELS (a build against a CUDA libtorch) and otherwise
// reports graphs unavailable.
#include <functional>
#include <memory>
#include <string>

namespace recmod::cuda {

/// Whether this build can capture CUDA graphs (a CUDA build); the device
/// itself is the caller's check.
bool cuda_graphs_available();

/// One capture, replayed any number of times. The work must read and write
/// only tensors whose storage outlives the graph (static inputs, parameters,
/// optimizer state) or that the capture itself allocated; no host
/// synchronisation inside (a CUDA error ends the capture: capture() throws).
class CudaGraph {
 public:
  CudaGraph();
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  /// Runs `work` eagerly on a side stream (the warm-up iterations a capture
  /// needs: libraries' workspaces, autograd's state), with the device
  /// synchronised before and after, so it is ordered with the current stream.
  void run_on_side_stream(const std::function<void()>& work);
  /// Captures `work` on a side stream (nothing runs). Throws std::runtime_error
  /// (with CUDA's or libtorch's message) when the capture fails; the capture
  /// is then ended and this object holds no graph. Once per object.
  void capture(const std::function<void()>& work);
  /// Launches the captured graph on the current stream (asynchronous).
  void replay();
  bool captured() const { return captured_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool captured_ = false;
};

}  // namespace recmod::cuda
