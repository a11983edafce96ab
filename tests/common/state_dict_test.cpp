#include "recmod/common/state_dict.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "recmod/common/errors.h"

namespace recmod {
namespace state_dict_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct InnerImpl : torch::nn::Module {
  InnerImpl() {
    weight = register_parameter("weight", torch::zeros({2, 3}));
    counts = register_buffer("counts", torch::zeros({4}, torch::kLong));
  }
  torch::Tensor weight, counts;
};
TORCH_MODULE(Inner);

struct OuterImpl : torch::nn::Module {
  OuterImpl() {
    bias = register_parameter("bias", torch::zeros({3}));
    inner = register_module("_inner", Inner());
    register_parameter("unused", torch::Tensor(), /*requires_grad=*/false);  // undefined: skipped like Python's None
  }
  torch::Tensor bias;
  Inner inner{nullptr};
};
TORCH_MODULE(Outer);

std::vector<std::string> keys(const StateDict& d) {
  std::vector<std::string> out;
  for (const auto& kv : d) out.push_back(kv.first);
  return out;
}

TEST(StateDict, PyTorchKeysAndOrder) {
  Outer m;
  EXPECT_THAT(keys(state_dict(*m)), ElementsAre("bias", "_inner.weight", "_inner.counts"));
}

TEST(StateDict, LoadCopiesIntoExistingTensors) {
  Outer m;
  auto* before = m->inner->weight.data_ptr();
  load_state_dict(*m, {{"bias", torch::ones({3})}, {"_inner.weight", torch::full({2, 3}, 2.0)},
                       {"_inner.counts", torch::arange(4)}},
                  "ckpt.pt");
  EXPECT_EQ(m->inner->weight.data_ptr(), before);
  EXPECT_TRUE(torch::equal(m->inner->counts, torch::arange(4)));
  EXPECT_FLOAT_EQ(m->bias.sum().item<float>(), 3.0f);
}

TEST(StateDict, LoadDoesNotWriteATensorThatAlreadyIsTheSourcesBytes) {
  // A table that adopted its (memory-mapped) checkpoint tensor: copying it
  // onto itself would write every page. Here the bytes are read-only pages,
  // so a write would crash the test.
  const size_t bytes = 4096;
  void* page = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  const torch::Tensor source = torch::from_blob(page, {2, 3}, torch::kFloat);  // zeros
  Outer m;
  {
    torch::NoGradGuard no_grad;
    m->inner->weight.set_data(source);
  }
  load_state_dict(*m, {{"bias", torch::ones({3})}, {"_inner.weight", source}, {"_inner.counts", torch::arange(4)}},
                  "ckpt.pt");
  EXPECT_EQ(m->inner->weight.data_ptr(), page);
  EXPECT_FLOAT_EQ(m->bias.sum().item<float>(), 3.0f);
  m = Outer();
  ::munmap(page, bytes);
}

template <typename F>
std::string checkpoint_error(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "<no CheckpointError>";
}

TEST(StateDict, CheckFiniteFindsAValueAnywhereInEveryLayout) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_NO_THROW(check_finite(torch::ones({2000, 100}), "w", "a.pt"));
  // float32 contiguous (the one-pass check, blocks of 65536 values): either side of a block edge and the ends.
  for (int64_t at : {int64_t{0}, int64_t{65535}, int64_t{65536}, int64_t{199999}}) {
    torch::Tensor t = torch::ones({2000, 100});
    t.view(-1)[at] = -inf;
    EXPECT_THAT(checkpoint_error([&] { check_finite(t, "w", "a.pt"); }),
                HasSubstr("a.pt: key 'w' has -inf at index [" + std::to_string(at / 100) + ", " +
                          std::to_string(at % 100) + "] (1 of 200000 values are nan or inf)"));
  }
  torch::Tensor d = torch::ones({3}, torch::kDouble);
  d[1] = std::nan("");
  EXPECT_THAT(checkpoint_error([&] { check_finite(d, "d", "a.pt"); }), HasSubstr("key 'd' has nan at index [1]"));
  torch::Tensor strided = torch::ones({4, 5}).t();  // not contiguous
  strided[3][1] = inf;
  EXPECT_THAT(checkpoint_error([&] { check_finite(strided, "s", "a.pt"); }), HasSubstr("key 's' has inf at index [3, 1]"));
}

TEST(StateDict, StrictLoadErrorsNameKeyAndOrigin) {
  Outer m;
  StateDict good{{"bias", torch::ones({3})}, {"_inner.weight", torch::ones({2, 3})}, {"_inner.counts", torch::zeros({4}, torch::kLong)}};
  auto missing = good;
  missing.pop_back();
  EXPECT_THAT(checkpoint_error([&] { load_state_dict(*m, missing, "a.pt"); }),
              HasSubstr("a.pt: missing key '_inner.counts'"));
  auto extra = good;
  extra.emplace_back("zzz", torch::ones({1}));
  EXPECT_THAT(checkpoint_error([&] { load_state_dict(*m, extra, "a.pt"); }), HasSubstr("a.pt: unexpected key 'zzz'"));
  auto shape = good;
  shape[1].second = torch::ones({3, 2});
  EXPECT_THAT(checkpoint_error([&] { load_state_dict(*m, shape, "a.pt"); }),
              HasSubstr("key '_inner.weight' has shape [3, 2], the model expects [2, 3]"));
  auto dtype = good;
  dtype[2].second = torch::zeros({4});
  EXPECT_THAT(checkpoint_error([&] { load_state_dict(*m, dtype, "a.pt"); }),
              HasSubstr("key '_inner.counts' has dtype Float, the model expects Long"));
}

}  // namespace state_dict_test
}  // namespace recmod
