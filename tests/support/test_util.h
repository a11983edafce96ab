#pragma once
// Small helpers shared by the unit tests.
#include <ftw.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"

namespace recmod::test {

/// Removes a directory tree (or file); nothing when it does not exist.
/// Not std::filesystem::remove_all: built with g++ 13 against PyTorch 2.11's
/// CUDA wheel, every test whose remove_all met a non-empty directory died of
/// SIGSEGV on the GPU machine (suspected: the wheel's libraries export their
/// own, older build of std::filesystem), while Debian's libtorch is fine.
inline void remove_tree(const std::string& path) {
  nftw(
      path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

/// A file's bytes ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// state_dict keys of a module, in PyTorch's order.
inline std::vector<std::string> state_dict_keys(const torch::nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& kv : state_dict(m)) out.push_back(kv.first);
  return out;
}

/// The message of the exception of type E that f throws (torch errors
/// without their backtrace); "no error" when f returns normally. An
/// exception of another type propagates, so the test fails on it.
template <typename E = std::exception, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    if constexpr (std::is_base_of_v<E, c10::Error>) return e.what_without_backtrace();
    throw;
  } catch (const E& e) {
    return e.what();
  }
  return "no error";
}

/// Largest |autograd - central difference| of d sum(f() * w) / d p for a
/// random positive weighting w, in float64 (p and f's output float64).
inline double max_gradient_error(const std::function<torch::Tensor()>& f, torch::Tensor p) {
  torch::Tensor w = torch::rand_like(f()).detach() + 0.5;
  torch::Tensor grad = torch::autograd::grad({(f() * w).sum()}, {p})[0];
  torch::NoGradGuard no_grad;
  torch::Tensor flat = p.view(-1);
  double worst = 0.0;
  const double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double orig = flat[i].item<double>();
    flat[i] = orig + eps;
    const double plus = (f() * w).sum().item<double>();
    flat[i] = orig - eps;
    const double minus = (f() * w).sum().item<double>();
    flat[i] = orig;
    worst = std::max(worst, std::abs((plus - minus) / (2 * eps) - grad.view(-1)[i].item<double>()));
  }
  return worst;
}

}  // namespace recmod::test
