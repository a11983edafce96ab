#include "commands/runtime.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <thread>

#include "recmod/common/errors.h"

namespace recmod::app {

void set_threads(int threads) {
  if (threads < 0) throw UsageError(str_cat("--threads must be >= 0, got ", threads));
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // libtorch calls the system BLAS, which keeps its own thread pool; looked up
  // at run time so that a non-OpenBLAS BLAS still works.
  using SetThreads = void (*)(int);
  if (auto* set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(threads);
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw UsageError(str_cat("--device ", name, ": CUDA is not available in this build or on this machine; use --device cpu"));
    int index = 0;
    if (name.size() > 5) {
      try {
        index = std::stoi(name.substr(5));
      } catch (const std::exception&) {
        throw UsageError(str_cat("--device ", name, ": expected cuda:N with N a number"));
      }
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      throw UsageError(str_cat("--device ", name, ": this machine has ", torch::cuda::device_count(), " CUDA device(s)"));
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw UsageError(str_cat("--device must be cpu, cuda or cuda:N, got '", name, "'"));
}

}  // namespace recmod::app
