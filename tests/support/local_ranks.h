#pragma once
// In-process ranks for the sharding tests: each rank is a thread of the test
// that joins a Gloo process group on 127.0.0.1, as a torchrun rank would.
#include <chrono>
#include <cstdint>
#include <memory>

#include "recmod/dist/communicator.h"
#include "recmod/dist/launch_env.h"

namespace recmod::test {

/// Rank `rank` of `world` ranks on one host, rendezvous at 127.0.0.1:`port`
/// (from dist::free_local_port()), collectives timing out after 30 s.
inline std::shared_ptr<dist::Communicator> connect_local_rank(int64_t rank, int64_t world, int port) {
  dist::LaunchEnv env;
  env.rank = rank;
  env.world_size = world;
  env.local_rank = rank;
  env.local_world_size = world;
  env.master_port = port;
  env.source = "torchrun";
  dist::CommunicatorOptions options;
  options.timeout = std::chrono::seconds(30);
  return dist::connect(env, options);
}

}  // namespace recmod::test
