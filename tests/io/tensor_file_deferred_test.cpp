// io::write_tensors of deferred tensors: the bytes of the same dict written
// whole, each tensor made only at its turn and freed before the next, every
// make called even when the sink fails (other ranks may wait in them).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/io/tensor_file.h"

namespace recmod::io {
namespace tensor_file_deferred_test {

StateDict some_tensors() {
  return {{"a.weight", torch::arange(12, torch::kFloat).reshape({3, 4})},
          {"a.steps", torch::tensor({5, -7}, torch::kLong)},
          {"b.scalar", torch::tensor(2.5)},
          {"b.half", torch::ones({2, 3}, torch::kHalf)}};
}

std::vector<char> bytes_of(const DeferredStateDict& entries) {
  std::vector<char> bytes;
  write_tensors(entries, [&](const void* data, size_t n) {
    bytes.insert(bytes.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
  });
  return bytes;
}

TEST(DeferredWrite, WritesTheBytesOfTheSameTensorsGivenWhole) {
  const StateDict tensors = some_tensors();
  DeferredStateDict entries;
  std::vector<std::string> made;
  for (const auto& [key, tensor] : tensors)
    entries.push_back(DeferredTensor{key, tensor.sizes().vec(), tensor.scalar_type(), [&, key = key, tensor = tensor] {
                                       made.push_back(key);
                                       return tensor.clone();
                                     }});
  EXPECT_EQ(bytes_of(entries), tensors_to_bytes(tensors));
  EXPECT_EQ(made, (std::vector<std::string>{"a.weight", "a.steps", "b.scalar", "b.half"}));  // once each, in order
}

TEST(DeferredWrite, EachTensorIsFreedBeforeTheNextIsMade) {
  constexpr int kTensors = 4;
  auto freed = std::make_shared<std::vector<bool>>(kTensors, false);
  DeferredStateDict entries;
  for (int i = 0; i < kTensors; ++i)
    entries.push_back(DeferredTensor{"t" + std::to_string(i), {1000}, torch::kFloat, [i, freed] {
                                       for (int j = 0; j < i; ++j) EXPECT_TRUE((*freed)[j]) << "t" << j << " at t" << i;
                                       auto* data = new float[1000]();
                                       return torch::from_blob(
                                           data, {1000},
                                           [i, freed](void* p) {
                                             delete[] static_cast<float*>(p);
                                             (*freed)[i] = true;
                                           },
                                           torch::kFloat);
                                     }});
  bytes_of(entries);
  for (int i = 0; i < kTensors; ++i) EXPECT_TRUE((*freed)[i]) << i;
}

TEST(DeferredWrite, AFailingSinkStillMakesEveryTensorThenThrows) {
  int makes = 0;
  DeferredStateDict entries;
  for (const auto& [key, tensor] : some_tensors())
    entries.push_back(DeferredTensor{key, tensor.sizes().vec(), tensor.scalar_type(), [&, tensor = tensor] {
                                       ++makes;
                                       return tensor;
                                     }});
  int writes = 0;
  EXPECT_THROW(write_tensors(entries,
                             [&](const void*, size_t) {
                               if (++writes == 3) throw FileWriteError("disk full");
                             }),
               FileWriteError);
  EXPECT_EQ(makes, 4);
}

TEST(DeferredWrite, ATensorMadeWithAnotherShapeOrDtypeIsABug) {
  auto write_one = [](std::vector<int64_t> sizes, torch::Dtype dtype) {
    write_tensors(DeferredStateDict{{"x", std::move(sizes), dtype, [] { return torch::zeros({2, 3}); }}},
                  [](const void*, size_t) {});
  };
  EXPECT_NO_THROW(write_one({2, 3}, torch::kFloat));
  try {
    write_one({3, 2}, torch::kFloat);
    ADD_FAILURE() << "no error";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("'x' was announced as Float[3, 2] but made as Float[2, 3]"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(write_one({2, 3}, torch::kDouble), std::logic_error);
}

TEST(DeferredWrite, MakeAndDropCallsEveryMakeInOrder) {
  std::vector<int> calls;
  DeferredStateDict entries;
  for (int i = 0; i < 3; ++i)
    entries.push_back(DeferredTensor{"t" + std::to_string(i), {}, torch::kFloat, [&, i] {
                                       calls.push_back(i);
                                       return torch::Tensor();
                                     }});
  make_and_drop(entries);
  EXPECT_EQ(calls, (std::vector<int>{0, 1, 2}));
}

}  // namespace tensor_file_deferred_test
}  // namespace recmod::io
