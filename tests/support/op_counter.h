// OpCounter: counts the ATen operations the constructing thread dispatches,
// by name and by a region the caller names (e.g. "forward", "optimizer").
// A test-support tool (a global RecordFunction callback; the product's
// code carries no scopes for it): each top-level operation is one kernel
// launch or more on a GPU, so the count is what a host-bound step costs.
#pragma once

#include <ATen/record_function.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace recmod::testing {

class OpCounter {
 public:
  OpCounter() {
    active() = this;
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(&OpCounter::on_start, &OpCounter::on_end).scopes({at::RecordScope::FUNCTION}));
  }
  ~OpCounter() {
    at::removeCallback(handle_);
    active() = nullptr;
  }
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;

  /// Operations from now on count under `name`; "" stops counting.
  void region(std::string name) {
    std::lock_guard<std::mutex> lock(mutex_);
    region_ = std::move(name);
  }
  /// Top-level operations (not those an operation calls) counted so far.
  int64_t total() const {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t n = 0;
    for (const auto& [_, c] : by_region_) n += c;
    return n;
  }
  int64_t in_region(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_region_.find(name);
    return it == by_region_.end() ? 0 : it->second;
  }
  /// How many times `op` (e.g. "aten::add_") was counted, in all regions.
  int64_t of_op(const std::string& op) const {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t n = 0;
    for (const auto& [key, c] : by_op_)
      if (key.second == op) n += c;
    return n;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    by_region_.clear();
    by_op_.clear();
  }
  /// Per region, its count and its operations by count (most first).
  std::string report() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::ostringstream os;
    for (const auto& [region, count] : by_region_) {
      os << region << ": " << count << "\n";
      std::vector<std::pair<int64_t, std::string>> ops;
      for (const auto& [key, n] : by_op_)
        if (key.first == region) ops.emplace_back(-n, key.second);
      std::sort(ops.begin(), ops.end());
      for (const auto& [n, name] : ops) os << "  " << -n << " " << name << "\n";
    }
    return os.str();
  }

 private:
  static OpCounter*& active() {
    static OpCounter* counter = nullptr;
    return counter;
  }
  static int& depth() {
    thread_local int d = 0;
    return d;
  }
  // The autograd engine's record of a backward node is a frame, not an
  // operation: the operations the node runs count as top-level ones.
  static bool frame(const at::RecordFunction& fn) {
    return std::strncmp(fn.name(), "autograd::engine::", 18) == 0;
  }
  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    if (frame(fn)) return nullptr;
    if (depth()++ == 0)
      if (OpCounter* c = active()) c->count(fn.name());
    return nullptr;
  }
  static void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
    if (!frame(fn)) --depth();
  }
  void count(const char* name) {
    // Operations on intra-op worker threads run inside a counted one; their
    // number depends on the thread count.
    if (std::this_thread::get_id() != thread_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (region_.empty()) return;
    ++by_region_[region_];
    ++by_op_[{region_, name}];
  }

  mutable std::mutex mutex_;
  std::string region_;
  std::map<std::string, int64_t> by_region_;
  std::map<std::pair<std::string, std::string>, int64_t> by_op_;
  at::CallbackHandle handle_ = 0;
  std::thread::id thread_ = std::this_thread::get_id();
};

}  // namespace recmod::testing
