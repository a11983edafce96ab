// CUDA graphs (see cuda_graph.h). With RECMOD_CUDA_KERNELS (a build against a
// CUDA libtorch) this file uses libtorch's CUDAGraph and CUDA streams; the
// CPU-only build compiles the stub at the end, which reports graphs
// unavailable.
#include "recmod/cuda/cuda_graph.h"

#include <stdexcept>

#ifdef RECMOD_CUDA_KERNELS

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>
#include <torch/version.h>

namespace recmod::cuda {

struct CudaGraph::Impl {
  // Streams may not be default-constructed: taken from the pool on the
  // current device when the graph object is made.
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
  std::unique_ptr<at::cuda::CUDAGraph> graph;
};

bool cuda_graphs_available() { return true; }

CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;

void CudaGraph::run_on_side_stream(const std::function<void()>& work) {
  c10::cuda::device_synchronize();
  {
    c10::cuda::CUDAStreamGuard guard(impl_->side);
    work();
  }
  c10::cuda::device_synchronize();
}

void CudaGraph::capture(const std::function<void()>& work) {
  if (captured_ || impl_->graph) throw std::runtime_error("CudaGraph::capture: this graph was already captured");
  c10::cuda::device_synchronize();
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  std::string failure;
  {
    c10::cuda::CUDAStreamGuard guard(impl_->side);
    // Thread-local capture mode where libtorch takes one (2.x): another
    // thread's CUDA calls (an input pipeline pinning memory) must not fail
    // while this thread captures; 1.13 captures in global mode only.
#if TORCH_VERSION_MAJOR >= 2
    graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
    graph->capture_begin();
#endif
    try {
      work();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (failure.empty()) {
      try {
        graph->capture_end();
      } catch (const std::exception& e) {
        failure = e.what();
      }
    } else {
      // End the stream's capture (the graph is discarded) so the stream and
      // the device stay usable for eager work; CUDAGraph's own capture_end
      // would throw on an invalidated capture before cleaning up.
      cudaGraph_t partial = nullptr;
      if (cudaStreamEndCapture(impl_->side.stream(), &partial) == cudaSuccess && partial) cudaGraphDestroy(partial);
      (void)cudaGetLastError();  // clear a non-sticky capture error
    }
  }
  if (!failure.empty()) {
    // The CUDAGraph object is dropped without its destructor's clean-up of a
    // half-made capture (it may hold a pool the allocator still routes to);
    // leaking it is the safe choice, once per run.
    (void)graph.release();
    (void)cudaGetLastError();
    c10::cuda::device_synchronize();
    throw std::runtime_error(failure);
  }
  c10::cuda::device_synchronize();
  impl_->graph = std::move(graph);
  captured_ = true;
}

void CudaGraph::replay() {
  if (!captured_) throw std::runtime_error("CudaGraph::replay: nothing was captured");
  impl_->graph->replay();
}

}  // namespace recmod::cuda

#else  // the CPU-only build

namespace recmod::cuda {

struct CudaGraph::Impl {};

namespace {
[[noreturn]] void no_cuda_graphs() {
  throw std::runtime_error("this build of recmod has no CUDA graphs (built without CUDA)");
}
}  // namespace

bool cuda_graphs_available() { return false; }
CudaGraph::CudaGraph() = default;
CudaGraph::~CudaGraph() = default;
void CudaGraph::run_on_side_stream(const std::function<void()>&) { no_cuda_graphs(); }
void CudaGraph::capture(const std::function<void()>&) { no_cuda_graphs(); }
void CudaGraph::replay() { no_cuda_graphs(); }

}  // namespace recmod::cuda

#endif
