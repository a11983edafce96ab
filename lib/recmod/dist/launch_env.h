#pragma once
// Who this process is in a distributed run, read from the environment the
// usual launchers set: torchrun (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), Slurm's srun (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, ...), Open MPI's mpirun
// (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE), and
// `recmod ... --nproc N`, which sets torchrun's variables for its ranks.
//
// Precedence: the first launcher whose variables are present is used, the
// others are ignored entirely (even when malformed):
//
// 1. torchrun, when any of RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE is
//    set. All four are then required (a partial set is an error).
//    MASTER_ADDR: required when WORLD_SIZE > 1 unless every rank is on this
//    host (LOCAL_WORLD_SIZE == WORLD_SIZE), then 127.0.0.1 by default.
//    MASTER_PORT: 29500 (torchrun's default) when unset.
// 2. Slurm, when SLURM_PROCID is set in a task of an srun step (SLURM_STEP_ID,
//    SLURM_STEPID or SLURM_STEP_NUM_TASKS set). A batch script or salloc
//    shell that is not an srun task is one process ("none") even though
//    SLURM_NTASKS describes the allocation.
//      rank             SLURM_PROCID
//      world_size       SLURM_STEP_NUM_TASKS, else SLURM_NTASKS (required)
//      local_rank       SLURM_LOCALID (required when world_size > 1)
//      local_world_size SLURM_STEP_TASKS_PER_NODE (Slurm's "2(x3),1" syntax;
//                       this node's entry by SLURM_NODEID when they differ),
//                       else SLURM_NTASKS_PER_NODE, else world_size when the
//                       step is on one node (SLURM_STEP_NUM_NODES or
//                       SLURM_NNODES == 1); otherwise an error.
//      master_addr      MASTER_ADDR if set, else the first host of
//                       SLURM_STEP_NODELIST, SLURM_JOB_NODELIST or
//                       SLURM_NODELIST (compressed syntax: node[01-04,07],gpu3
//                       -> node01), else 127.0.0.1 when on one node.
//      master_port      MASTER_PORT if set, else 15000 + SLURM_JOB_ID % 10000
//                       (the range [15000, 24999], below Linux's ephemeral
//                       ports; every task of a job agrees without talking),
//                       else 29500.
//    SLURM_NTASKS=1 (and no torchrun variables) is just one process.
// 3. Open MPI, when any of OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK,
//    _LOCAL_SIZE is set; all four are then required. MASTER_ADDR is required
//    unless every rank is on this host (OMPI_COMM_WORLD_LOCAL_SIZE ==
//    OMPI_COMM_WORLD_SIZE), then 127.0.0.1; MASTER_PORT defaults to 29500.
// 4. Otherwise one process ("none"): rank 0 of 1; MASTER_ADDR/MASTER_PORT are
//    still read (and checked) when set.
//
// Every error is a UsageError naming the variable, the value found (or "is
// not set") and what was expected.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace recmod::dist {

struct LaunchEnv {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  int64_t local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// "torchrun" (also recmod --nproc), "slurm", "openmpi", or "none" (one process).
  std::string source = "none";
  bool distributed() const { return world_size > 1; }
};

/// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
/// The process environment (getenv).
std::optional<std::string> process_env(const std::string& name);

/// Reads the launch environment. torchrun's variables win over Slurm's,
/// Slurm's over Open MPI's. Throws UsageError naming the variable, its value
/// and what was expected (a rank outside [0, world_size), a non-integer, a
/// port outside [1, 65535], a missing MASTER_ADDR on several hosts, ...).
LaunchEnv read_launch_env(const EnvLookup& env = process_env);

/// The first host of a Slurm host list in its compressed syntax
/// ("node[01-04,07],gpu3" -> "node01", "rack[2-3]-n[5,9]" -> "rack2-n5",
/// zero padding kept as written); nullopt when the list is empty or malformed
/// (unbalanced brackets, an empty range, a range that is not digits).
std::optional<std::string> first_slurm_host(const std::string& hostlist);

/// The master port derived from a Slurm job id: 15000 + job_id % 10000.
int slurm_job_port(int64_t job_id);

}  // namespace recmod::dist
