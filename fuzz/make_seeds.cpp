// Writes the seed files of the binary formats into a corpus directory:
//   fuzz_make_seeds fuzz/corpus
// (.rmb files for fuzz_binary, torch.save files for fuzz_checkpoint and their
// data.pkl for fuzz_pickle). The text seeds (YAML, TSV, JSONL) are written by
// hand and committed as they are.
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "fuzz_util.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/criteo_npy.h"
#include "recmod/io/tensor_file.h"

using namespace recmod;

namespace {

data::ExampleColumns rows(bool weighted, int64_t n) {
  data::DataSchema schema;
  schema.num_dense = 2;
  schema.sparse_features = {"f1", "f2"};
  schema.weighted = weighted;
  data::ExampleColumns out(schema);
  for (int64_t r = 0; r < n; ++r) {
    out.labels.push_back(static_cast<float>(r % 2));
    out.dense.push_back(0.5f * r);
    out.dense.push_back(-1.0f);
    for (size_t f = 0; f < 2; ++f) {
      for (int64_t i = 0; i < (r + static_cast<int64_t>(f)) % 3; ++i) {
        out.sparse[f].ids.push_back(r * 10 + i);
        if (weighted) out.sparse[f].weights.push_back(0.25f * (i + 1));
      }
      out.close_bag(f);
    }
    out.finish_row();
  }
  return out;
}

void write_pickle_of(const std::string& checkpoint, const std::string& out) {
  caffe2::serialize::PyTorchStreamReader reader(checkpoint);
  auto [data, size] = reader.getRecord("data.pkl");
  std::ofstream(out, std::ios::binary).write(static_cast<const char*>(data.get()), static_cast<std::streamsize>(size));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds CORPUS_DIR\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  for (const char* sub : {"binary", "checkpoint", "pickle", "npy"}) std::filesystem::create_directories(dir / sub);
  {  // a TorchRec Criteo .npy day (5 rows, one id per feature), as fuzz_npy takes it
    const std::string prefix = (dir / "npy" / "day").string();
    data::ExampleColumns day = rows(false, 0);
    for (int64_t r = 0; r < 5; ++r) {
      day.labels.push_back(static_cast<float>(r % 2));
      day.dense.insert(day.dense.end(), {std::log(3.0f + r), 0.5f});
      for (size_t f = 0; f < 2; ++f) {
        day.sparse[f].ids.push_back(r * 7 + static_cast<int64_t>(f));
        day.close_bag(f);
      }
      day.finish_row();
    }
    data::write_criteo_npy(prefix, day);
    std::string joined;
    for (const char* s : {"_dense.npy", "_sparse.npy", "_labels.npy"}) {
      std::ifstream in(prefix + s, std::ios::binary);
      if (!joined.empty()) joined += fuzz::kNpySeparator;
      joined.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      std::filesystem::remove(prefix + s);
    }
    std::ofstream(dir / "npy" / "day.seed", std::ios::binary) << joined;
  }
  data::write_binary((dir / "binary/plain.rmb").string(), rows(false, 5));
  data::write_binary((dir / "binary/weighted.rmb").string(), rows(true, 3));
  data::write_binary((dir / "binary/empty.rmb").string(), rows(false, 0));

  torch::manual_seed(0);
  const std::vector<std::pair<std::string, StateDict>> checkpoints = {
      {"small", {{"w", torch::randn({3, 2})}, {"b", torch::zeros({2})}, {"step", torch::tensor({7}, torch::kLong)}}},
      {"dtypes", {{"half", torch::ones({2, 2}, torch::kHalf)}, {"i32", torch::arange(4, torch::kInt)},
                  {"bool", torch::ones({1}, torch::kBool)}, {"scalar", torch::tensor(1.5)}}},
      {"empty", {}}};
  for (const auto& [name, tensors] : checkpoints) {
    const std::string path = (dir / "checkpoint" / (name + ".pt")).string();
    io::save_tensors(path, tensors);
    write_pickle_of(path, (dir / "pickle" / (name + ".pkl")).string());
  }
  // The strict zip reader's other paths (issue 18): a legacy (non-zip)
  // torch.save file and a newer format version.
  std::filesystem::copy_file(RECMOD_SOURCE_DIR "/tests/reliability/inputs/legacy_torch_save.pt",
                             dir / "checkpoint" / "legacy.pt", std::filesystem::copy_options::overwrite_existing);
  {
    std::ofstream out(dir / "checkpoint" / "version99.pt", std::ios::binary);
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
      out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
      return n;
    });
    writer.setMinVersion(99);
    const std::string pickle = "\x80\x02}q\x00.";  // an empty dict
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeEndOfFile();
  }
  std::cout << "seeds written to " << dir.string() << "\n";
  return 0;
}
