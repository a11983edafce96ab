#include "recmod/conformance/runner.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/conformance/registry.h"

namespace recmod::conformance {

namespace fs = std::filesystem;

namespace {

struct CaseFailure {
  std::string message;
};

std::unique_ptr<CaseModule> build(const GoldenCase& c, const torch::Device& device) {
  const auto& registry = case_registry();
  auto it = registry.find(c.module);
  if (it == registry.end()) throw CaseFailure{"unsupported module " + c.module};
  auto m = it->second(c.args);
  if (!m) throw CaseFailure{"builder for " + c.module + " returned nothing"};
  if (m->module()) load_state_dict(*m->module(), c.state_dict, "state_dict");
  else if (!c.state_dict.empty())
    throw CaseFailure{str_cat("state_dict has ", c.state_dict.size(), " keys but ", c.module, " has no module")};
  if (m->module() && device != torch::Device(torch::kCPU)) m->module()->to(device);
  return m;
}

void check(const std::optional<Mismatch>& m) {
  if (m) throw CaseFailure{m->where + ": " + m->detail};
}

void compare_state(const StateDict& expected, const torch::nn::Module& module, double rtol, double atol,
                   const std::string& where) {
  const StateDict actual = state_dict(module);
  std::set<std::string> actual_keys;
  for (const auto& kv : actual) actual_keys.insert(kv.first);
  for (const auto& [k, v] : expected) {
    const torch::Tensor* a = find_tensor(actual, k);
    if (!a) throw CaseFailure{str_cat(where, ": missing key '", k, "'")};
    check(compare_tensors(v, *a, rtol, atol, where + "." + k));
    actual_keys.erase(k);
  }
  if (!actual_keys.empty()) throw CaseFailure{str_cat(where, ": unexpected key '", *actual_keys.begin(), "'")};
}

Inputs inputs_on(const Inputs& inputs, const torch::Device& device) {
  if (device == torch::Device(torch::kCPU)) return inputs;
  Inputs moved;
  moved.reserve(inputs.size());
  for (const auto& [name, v] : inputs) moved.emplace_back(name, value_to(v, device));
  return moved;
}

void replay_calls(const GoldenCase& c, const torch::Device& device) {
  auto m = build(c, device);
  for (size_t i = 0; i < c.calls.size(); ++i) {
    const auto& call = c.calls[i];
    const std::string where = "calls[" + std::to_string(i) + "]";
    if (m->module()) m->module()->train(call.train);
    Value out;
    {
      torch::NoGradGuard no_grad;
      out = m->call(call.method, inputs_on(call.inputs, device));
    }
    check(compare_values(call.outputs, out, c.rtol, c.atol, where + ".outputs"));
  }
  if (c.state_dict_after) {
    if (!m->module()) throw CaseFailure{"state_dict_after given but " + c.module + " has no module"};
    compare_state(*c.state_dict_after, *m->module(), c.rtol, c.atol, "state_dict_after");
  }
}

void run_train_step(const GoldenCase& c, const torch::Device& device) {
  const auto& step = *c.train_step;
  if (step.optimizer != "sgd") throw CaseFailure{"train_step: unsupported optimizer '" + step.optimizer + "'"};
  if (step.loss != "sum_of_outputs") throw CaseFailure{"train_step: unsupported loss '" + step.loss + "'"};
  if (c.calls.empty()) throw CaseFailure{"train_step: the case has no calls"};
  auto m = build(c, device);
  if (!m->module()) throw CaseFailure{"train_step given but " + c.module + " has no module"};
  torch::nn::Module& module = *m->module();
  module.train(true);
  const auto& call = c.calls.front();
  Value out = m->call(call.method, inputs_on(call.inputs, device));
  torch::Tensor loss = sum_of_float_outputs(out);
  if (!loss.defined()) throw CaseFailure{"train_step: the output has no floating-point tensor"};
  loss.backward();

  // Gradients of every trainable parameter, exactly the expected set.
  std::set<std::string> expected_keys;
  for (const auto& kv : step.expected_grads) expected_keys.insert(kv.first);
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (!p.value().requires_grad()) continue;
    if (!expected_keys.count(p.key()))
      throw CaseFailure{str_cat("train_step.expected_grads: parameter '", p.key(),
                                "' requires grad in recmod but not in TorchRec")};
  }
  const StateDict params = state_dict(module);
  for (const auto& [k, expected] : step.expected_grads) {
    const torch::Tensor* p = find_tensor(params, k);
    if (!p) throw CaseFailure{str_cat("train_step.expected_grads: no parameter '", k, "'")};
    torch::Tensor grad = p->grad().defined() ? p->grad() : torch::zeros_like(*p);
    if (grad.is_sparse()) grad = grad.to_dense();
    check(compare_tensors(expected, grad, c.rtol, c.atol, "train_step.grad." + k));
  }
  {
    torch::NoGradGuard no_grad;
    for (const auto& [k, _] : step.expected_grads) {
      torch::Tensor p = *find_tensor(params, k);
      if (p.grad().defined()) p.sub_(p.grad().is_sparse() ? p.grad().to_dense() : p.grad(), step.lr);
    }
  }
  compare_state(step.expected_state_dict, module, c.rtol, c.atol, "train_step.expected_state_dict");
}

std::string error_text(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

}  // namespace

CaseResult run_case(const GoldenCase& c, const torch::Device& device) {
  CaseResult r;
  r.name = c.name;
  r.module = c.module;
  r.supported = is_supported(c.module);
  try {
    replay_calls(c, device);
    if (c.train_step) run_train_step(c, device);
    r.passed = true;
  } catch (const CaseFailure& f) {
    r.message = f.message;
  } catch (const std::exception& e) {
    r.message = "error: " + error_text(e);
  }
  return r;
}

CaseResult run_case_file(const std::string& path, const torch::Device& device) {
  try {
    return run_case(load_golden_case(path), device);
  } catch (const std::exception& e) {
    CaseResult r;
    r.name = fs::path(path).stem().string();
    r.message = "cannot load case: " + error_text(e);
    return r;
  }
}

std::vector<std::string> collect_case_files(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      std::vector<std::string> files;
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      out.insert(out.end(), files.begin(), files.end());
    } else if (fs::exists(p)) {
      out.push_back(p);
    } else {
      throw UsageError(p + ": no such file or directory");
    }
  }
  return out;
}

RunSummary run_conformance(const std::vector<std::string>& files, std::ostream& out, const torch::Device& device) {
  RunSummary s;
  for (const auto& f : files) {
    const CaseResult r = run_case_file(f, device);
    if (r.passed) {
      ++s.passed;
      out << r.name << " PASS\n";
    } else {
      ++s.failed;
      if (r.supported) ++s.failed_supported;
      out << r.name << " FAIL " << (r.module.empty() ? "" : "(" + r.module + ") ") << r.message << "\n";
    }
    out.flush();
  }
  out << s.passed << " passed, " << s.failed << " failed\n";
  return s;
}

}  // namespace recmod::conformance
