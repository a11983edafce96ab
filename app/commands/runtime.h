#pragma once
// Process-wide settings shared by the commands: threads and device.
#include <torch/types.h>

#include <string>

namespace recmod::app {

/// Sets torch's intra-op threads and OpenBLAS's threads to the same count;
/// 0 means one per core.
void set_threads(int threads);

/// "cpu", "cuda", "cuda:N"; UsageError for anything else or a CUDA device
/// this build or machine lacks.
torch::Device parse_device(const std::string& name);

}  // namespace recmod::app
