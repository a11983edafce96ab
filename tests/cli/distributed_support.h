#pragma once
// Shared by the distributed CLI tests: generated data with a held-out set,
// and the comparison of two torch.save files key by key.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "cli/run_recmod.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {

struct GeneratedData {
  std::string dir, train, eval;
};

/// `rows` training rows (3 dense, `sparse` features C1.., 1-3 ids per bag,
/// 40 ids) and 200 held-out rows of the same stream, in a fresh directory.
inline GeneratedData generate_data(const std::string& name, int rows, int sparse) {
  GeneratedData d;
  d.dir = fresh_dir(name);
  const std::string shape = " --dense 3 --sparse " + std::to_string(sparse) + " --cardinality 40 --max-ids 3 --seed 2";
  d.train = d.dir + "/train.rmb";
  auto r = run_recmod("generate --rows " + std::to_string(rows) + shape + " --out " + d.train);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  d.eval = d.dir + "/eval.rmb";
  r = run_recmod("generate --rows 200 --skip " + std::to_string(rows) + shape + " --out " + d.eval);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return d;
}

/// Every key of `a` in `b` (same order, same shape) and, for keys starting
/// with `prefix`, within `tolerance`.
inline void expect_same_tensors(const std::string& a_path, const std::string& b_path, double tolerance,
                                const std::string& prefix = "") {
  const StateDict a = io::load_tensors(a_path), b = io::load_tensors(b_path);
  ASSERT_EQ(a.size(), b.size()) << a_path << " vs " << b_path;
  int compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    if (a[i].first.rfind(prefix, 0) != 0) continue;
    ASSERT_EQ(a[i].second.sizes(), b[i].second.sizes()) << a[i].first;
    const double diff = (a[i].second.to(torch::kDouble) - b[i].second.to(torch::kDouble)).abs().max().item<double>();
    EXPECT_LE(diff, tolerance) << a[i].first;
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

}  // namespace recmod::testing
