#pragma once
// Shared by the distributed CLI tests: generated data with a held-out set,
// and the comparison of two torch.save files key by key.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "cli/run_recmod.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {

struct GeneratedData {
  std::string dir, train, eval;
};

/// `rows` training rows (3 dense, `sparse` features C1.., 1-`max_ids` ids per
/// bag, 40 ids) and 200 held-out rows of the same stream, in a fresh directory.
inline GeneratedData generate_data(const std::string& name, int rows, int sparse, int max_ids = 3) {
  GeneratedData d;
  d.dir = fresh_dir(name);
  const std::string shape = " --dense 3 --sparse " + std::to_string(sparse) + " --cardinality 40 --max-ids " +
                            std::to_string(max_ids) + " --seed 2";
  d.train = write_synthetic(d.dir + "/train.rmb", "--rows " + std::to_string(rows) + shape);
  d.eval = write_synthetic(d.dir + "/eval.rmb", "--rows 200 --skip " + std::to_string(rows) + shape);
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

// ---- Managed-collision nodes (the MC EBC and MC-EC tests) ----

/// 300 rows, one id per bag (every batch has as many ids per feature as
/// rows, so the managed modules' histories, sized from the first batch,
/// never overflow), and 200 held-out rows.
inline GeneratedData generate_mc_data(const std::string& name) { return generate_data(name, 300, 3, 1); }

inline const torch::Tensor& tensor_of(const StateDict& state, const std::string& key) {
  const torch::Tensor* t = find_tensor(state, key);
  if (t == nullptr) throw std::runtime_error("missing key " + key);
  return *t;
}

/// The keys of managed-collision node `mc_arch`'s tables t_m1, t_m2.
struct McLayout {
  std::string slots = "mc_arch._managed_collision_collection._managed_collision_modules.";
  std::string weights;        // the tables' weights, e.g. "mc_arch._embedding_bag_collection.embedding_bags."
  std::string second_weights; // TorchRec's second name of the same tensors, if any
  /// trainer_state.pt's row-wise Adagrad key of a table's rows.
  std::function<std::string(const StateDict&, const std::string&)> momentum_key;
};

/// raw id -> its slot, for the ids a managed table has placed.
inline std::map<int64_t, int64_t> slots_of(const StateDict& model, const std::string& table,
                                           const McLayout& layout = {}) {
  constexpr int64_t kEmpty = std::numeric_limits<int64_t>::max();
  const auto ids = tensor_of(model, layout.slots + table + "._mch_sorted_raw_ids");
  const auto slots = tensor_of(model, layout.slots + table + "._mch_remapped_ids_mapping");
  std::map<int64_t, int64_t> out;
  for (int64_t i = 0; i < ids.size(0); ++i)
    if (ids[i].item<int64_t>() != kEmpty) out[ids[i].item<int64_t>()] = slots[i].item<int64_t>();
  return out;
}

/// One process with the global batch vs `ranks` ranks (`yaml(batch_size)`:
/// t_m1, t_m2 row_wise, 48 rows each, every row starting at 0.05, rowwise
/// Adagrad; `logit` and the plain table `bag_arch`): the same last loss, the
/// same keys and shapes in the same order, dense and plain-table tensors
/// within 1e-5, and every raw id's embedding row and optimizer state within
/// 1e-5, compared id by id (the ids sit in other slots), each id in a slot
/// of the rank whose input block holds it. `flags` go to the ranks' run.
inline void expect_mc_ranks_match_one_process(const std::string& name, int ranks, int64_t per_rank,
                                              const std::function<std::string(int64_t)>& yaml,
                                              const McLayout& layout, const std::string& flags = "") {
  const GeneratedData d = generate_mc_data(name);
  const auto one = write_file(d.dir + "/one.yaml", yaml(per_rank * ranks));
  const auto many = write_file(d.dir + "/many.yaml", yaml(per_rank));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto single = r.output;
  r = run_recmod("train " + many + " --data " + d.train + " --out " + d.dir + "/many --nproc " +
                 std::to_string(ranks) + " --dist-timeout 60 " + flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("t_m1=row_wise@"), std::string::npos) << r.output;
  const auto last = [](const std::string& out) { return out.substr(out.rfind("last loss")); };
  EXPECT_EQ(last(single).substr(0, 15), last(r.output).substr(0, 15));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5, "logit.");
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5, "bag_arch.");
  const StateDict a = io::load_tensors(d.dir + "/one/model.pt"), b = io::load_tensors(d.dir + "/many/model.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.sizes(), b[i].second.sizes()) << a[i].first;
  }
  const StateDict sa = io::load_tensors(d.dir + "/one/trainer_state.pt");
  const StateDict sb = io::load_tensors(d.dir + "/many/trainer_state.pt");
  const int64_t block = (40 + ranks - 1) / ranks, rows_per_rank = 48 / ranks;
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto ids_a = slots_of(a, table, layout), ids_b = slots_of(b, table, layout);
    ASSERT_EQ(ids_a.size(), 40u) << table;  // every id of the data has a slot of its own
    ASSERT_EQ(ids_b.size(), 40u) << table;
    const auto& wa = tensor_of(a, layout.weights + table + ".weight");
    const auto& wb = tensor_of(b, layout.weights + table + ".weight");
    if (!layout.second_weights.empty()) {
      EXPECT_TRUE(torch::equal(wb, tensor_of(b, layout.second_weights + table + ".weight"))) << table;
    }
    const auto& ma = tensor_of(sa, layout.momentum_key(sa, table));
    const auto& mb = tensor_of(sb, layout.momentum_key(sb, table));
    for (const auto& [id, slot] : ids_b) {
      EXPECT_EQ(slot / rows_per_rank, id / block) << table << " id " << id << ": slot of another rank's block";
      const int64_t slot_a = ids_a.at(id);
      EXPECT_LE((wa[slot_a] - wb[slot]).abs().max().item<double>(), 1e-5) << table << " id " << id;
      EXPECT_LE((ma[slot_a] - mb[slot]).abs().max().item<double>(), 1e-5) << table << " id " << id;
    }
    EXPECT_GT((wb - 0.05).abs().max().item<double>(), 1e-3) << table;  // the rows trained
  }
}

/// Eviction per shard and exact resume on 2 ranks: `yaml(batch_size)` with
/// t_m1, t_m2 row_wise, 12 slots for 40 ids (6 per rank: ids [0, 20) on rank
/// 0, [20, 40) on rank 1), eviction every 2 steps, reset_evicted_rows. A run
/// of the whole data (d.dir/full) equals, exactly, one stopped after 10 steps
/// and resumed; both shards placed ids, each in its own block; one process
/// (d.dir/one.yaml, the global batch) and 2 ranks evaluate the checkpoint.
/// Returns the data.
inline GeneratedData expect_mc_eviction_resumes_exactly(const std::string& name,
                                                        const std::function<std::string(int64_t)>& yaml) {
  const GeneratedData d = generate_mc_data(name);
  const auto two = write_file(d.dir + "/two.yaml", yaml(16));
  auto r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/full --nproc 2 --dist-timeout 60");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/part --nproc 2 --steps 10 --dist-timeout 60");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/part --nproc 2 --resume --dist-timeout 60");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // exactly the uninterrupted run (evicted rows re-drawn alike)
  expect_same_tensors(d.dir + "/full/model.pt", d.dir + "/part/model.pt", 0.0);
  expect_same_tensors(d.dir + "/full/trainer_state.pt", d.dir + "/part/trainer_state.pt", 0.0, "optimizer.");
  const StateDict model = io::load_tensors(d.dir + "/full/model.pt");
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto placed = slots_of(model, table);
    EXPECT_GE(placed.size(), 8u) << table;   // both shards placed ids
    EXPECT_LE(placed.size(), 10u) << table;  // at most 5 per shard (its last slot is the overflow)
    for (const auto& [id, slot] : placed) EXPECT_EQ(slot / 6, id / 20) << table << " id " << id;
  }
  // evaluation in one process and on 2 ranks reads it
  const auto one = write_file(d.dir + "/one.yaml", yaml(32));
  r = run_recmod("eval " + one + " --checkpoint " + d.dir + "/full/model.pt --data " + d.eval + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("eval " + two + " --checkpoint " + d.dir + "/full/model.pt --data " + d.eval + " --json --nproc 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return d;
}

}  // namespace recmod::testing
