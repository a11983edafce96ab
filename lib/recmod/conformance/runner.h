#pragma once
// The golden conformance runner: replays TorchRec's recorded calls on
// recmod's modules and reports, per case, PASS or the first mismatch.
#include <torch/types.h>

#include <ostream>
#include <string>
#include <vector>

#include "recmod/conformance/golden_case.h"

namespace recmod::conformance {

struct CaseResult {
  std::string name;
  std::string module;
  bool passed = false;
  bool supported = false;  // module type is in the registry
  std::string message;     // first mismatch or error, empty on PASS
};

/// Runs one parsed case. With a device other than the CPU, the module is
/// built and loaded on the CPU, then moved there with its inputs; outputs,
/// gradients and state are compared on the CPU against the same golden data.
CaseResult run_case(const GoldenCase& golden_case, const torch::Device& device = torch::kCPU);
/// Loads and runs one case file; a file that cannot be read is a FAIL.
CaseResult run_case_file(const std::string& path, const torch::Device& device = torch::kCPU);

/// Every *.json below each directory (sorted), or the file itself.
std::vector<std::string> collect_case_files(const std::vector<std::string>& paths);

struct RunSummary {
  int passed = 0;
  int failed = 0;
  int failed_supported = 0;  // failures among supported module types
};

/// Runs all cases, printing "name PASS" / "name FAIL (module): message"
/// and finally "N passed, N failed".
RunSummary run_conformance(const std::vector<std::string>& files, std::ostream& out,
                           const torch::Device& device = torch::kCPU);

}  // namespace recmod::conformance
