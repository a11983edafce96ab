#pragma once
// How the conformance runner drives a module: a CaseModule wraps one
// recmod module built from a golden case's "module"/"args" and answers its
// calls. One explicit registry (registry.h) maps TorchRec class names to
// builders; it is also the list of module types recmod declares supported.
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "recmod/conformance/value.h"

namespace recmod::conformance {

using json = nlohmann::ordered_json;
using Inputs = ValueDict;

class CaseModule {
 public:
  virtual ~CaseModule() = default;
  /// The module whose state_dict() the case describes; nullptr for plain
  /// functions (function:<name> cases).
  virtual torch::nn::Module* module() = 0;
  /// One call of the case: method is "forward", "evict", "preprocess" or
  /// "__call__"; inputs are keyword arguments.
  virtual Value call(const std::string& method, const Inputs& inputs) = 0;
};

using CaseBuilder = std::function<std::unique_ptr<CaseModule>(const json& args)>;

/// A CaseModule around a torch module holder (e.g. recmod::CrossNet) and a
/// function that performs the calls.
template <typename Holder>
class HolderCase : public CaseModule {
 public:
  using CallFn = std::function<Value(Holder&, const std::string& method, const Inputs& inputs)>;
  HolderCase(Holder holder, CallFn fn) : holder_(std::move(holder)), fn_(std::move(fn)) {}
  torch::nn::Module* module() override { return holder_.ptr().get(); }
  Value call(const std::string& method, const Inputs& inputs) override { return fn_(holder_, method, inputs); }
  Holder& holder() { return holder_; }

 private:
  Holder holder_;
  CallFn fn_;
};

/// A CaseModule for a plain function (no state).
class FunctionCase : public CaseModule {
 public:
  using CallFn = std::function<Value(const std::string& method, const Inputs& inputs)>;
  explicit FunctionCase(CallFn fn) : fn_(std::move(fn)) {}
  torch::nn::Module* module() override { return nullptr; }
  Value call(const std::string& method, const Inputs& inputs) override { return fn_(method, inputs); }

 private:
  CallFn fn_;
};

/// The keyword argument `name` of a call; throws InputError listing the
/// ones present when absent.
const Value& input(const Inputs& inputs, const std::string& name);
/// Throws InputError("<module>: unsupported method '<method>'").
[[noreturn]] void unsupported_method(const std::string& module, const std::string& method);

}  // namespace recmod::conformance
