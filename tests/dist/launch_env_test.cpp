#include "recmod/dist/launch_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::dist {
namespace launch_env_test {

using ::testing::HasSubstr;
using Vars = std::map<std::string, std::string>;

EnvLookup env_of(Vars vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

LaunchEnv read(const Vars& vars) {
  return read_launch_env(env_of(vars));
}

/// The message of the UsageError that read_launch_env throws for `vars`.
std::string error_of(const Vars& vars) {
  try {
    read(vars);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UsageError";
  return "";
}

Vars merged(Vars a, const Vars& b) {
  for (const auto& [k, v] : b) a[k] = v;
  return a;
}

const Vars kTorchrun = {{"RANK", "3"},
                        {"WORLD_SIZE", "8"},
                        {"LOCAL_RANK", "1"},
                        {"LOCAL_WORLD_SIZE", "2"},
                        {"MASTER_ADDR", "10.0.0.5"},
                        {"MASTER_PORT", "1234"}};
// A task of an srun step: srun -N 2 -n 4 on node[01-02].
const Vars kSlurm = {{"SLURM_PROCID", "2"},
                     {"SLURM_NTASKS", "4"},
                     {"SLURM_LOCALID", "0"},
                     {"SLURM_STEP_ID", "0"},
                     {"SLURM_STEP_NUM_TASKS", "4"},
                     {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"},
                     {"SLURM_STEP_NUM_NODES", "2"},
                     {"SLURM_NODEID", "1"},
                     {"SLURM_STEP_NODELIST", "node[01-02]"},
                     {"SLURM_JOB_NODELIST", "node[01-09]"},
                     {"SLURM_JOB_ID", "123456"}};
const Vars kOpenMpi = {{"OMPI_COMM_WORLD_RANK", "1"},
                       {"OMPI_COMM_WORLD_SIZE", "2"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                       {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};

TEST(LaunchEnv, NothingSetIsOneProcess) {
  LaunchEnv launch = read({});
  EXPECT_EQ(launch.source, "none");
  EXPECT_EQ(launch.rank, 0);
  EXPECT_EQ(launch.world_size, 1);
  EXPECT_EQ(launch.local_rank, 0);
  EXPECT_EQ(launch.local_world_size, 1);
  EXPECT_EQ(launch.master_addr, "127.0.0.1");
  EXPECT_EQ(launch.master_port, 29500);
  EXPECT_FALSE(launch.distributed());
}

TEST(LaunchEnv, OneProcessStillChecksMasterVariables) {
  EXPECT_EQ(read({{"MASTER_PORT", "4000"}}).master_port, 4000);
  EXPECT_THAT(error_of({{"MASTER_PORT", "0"}}), HasSubstr("MASTER_PORT is '0', expected a TCP port in [1, 65535]"));
}

TEST(LaunchEnv, Torchrun) {
  LaunchEnv launch = read(kTorchrun);
  EXPECT_EQ(launch.source, "torchrun");
  EXPECT_EQ(launch.rank, 3);
  EXPECT_EQ(launch.world_size, 8);
  EXPECT_EQ(launch.local_rank, 1);
  EXPECT_EQ(launch.local_world_size, 2);
  EXPECT_EQ(launch.master_addr, "10.0.0.5");
  EXPECT_EQ(launch.master_port, 1234);
  EXPECT_TRUE(launch.distributed());
}

TEST(LaunchEnv, TorchrunDefaultsOnOneHost) {
  LaunchEnv launch = read({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"}});
  EXPECT_EQ(launch.master_addr, "127.0.0.1");
  EXPECT_EQ(launch.master_port, 29500);
}

TEST(LaunchEnv, TorchrunWinsOverSlurmAndOpenMpi) {
  // Even malformed variables of the other launchers are ignored.
  Vars vars = merged(merged(kTorchrun, kSlurm), kOpenMpi);
  vars["SLURM_PROCID"] = "garbage";
  vars["OMPI_COMM_WORLD_RANK"] = "garbage";
  LaunchEnv launch = read(vars);
  EXPECT_EQ(launch.source, "torchrun");
  EXPECT_EQ(launch.rank, 3);
  EXPECT_EQ(launch.world_size, 8);
}

TEST(LaunchEnv, SlurmWinsOverOpenMpi) {
  Vars vars = merged(kSlurm, kOpenMpi);
  vars.erase("OMPI_COMM_WORLD_SIZE");  // a partial Open MPI set does not matter
  LaunchEnv launch = read(vars);
  EXPECT_EQ(launch.source, "slurm");
  EXPECT_EQ(launch.rank, 2);
}

TEST(LaunchEnv, TorchrunPartialSetsNameTheMissingVariable) {
  EXPECT_THAT(error_of({{"RANK", "0"}}),
              HasSubstr("WORLD_SIZE is not set, expected it with RANK ('0'): torchrun sets [RANK, WORLD_SIZE, "
                        "LOCAL_RANK, LOCAL_WORLD_SIZE] together"));
  EXPECT_THAT(error_of({{"WORLD_SIZE", "2"}}), HasSubstr("RANK is not set"));
  EXPECT_THAT(error_of({{"LOCAL_RANK", "0"}}), HasSubstr("RANK is not set, expected it with LOCAL_RANK ('0')"));
  Vars vars = kTorchrun;
  vars.erase("LOCAL_WORLD_SIZE");
  EXPECT_THAT(error_of(vars), HasSubstr("LOCAL_WORLD_SIZE is not set, expected it with RANK ('3')"));
}

TEST(LaunchEnv, TorchrunBadValues) {
  auto with = [](const std::string& name, const std::string& value) {
    Vars vars = kTorchrun;
    vars[name] = value;
    return error_of(vars);
  };
  EXPECT_THAT(with("RANK", "8"), HasSubstr("RANK is '8', expected an integer in [0, 8) (WORLD_SIZE is 8)"));
  EXPECT_THAT(with("RANK", "-1"), HasSubstr("RANK is '-1', expected an integer in [0, 8)"));
  EXPECT_THAT(with("RANK", "one"), HasSubstr("RANK is 'one', expected an integer"));
  EXPECT_THAT(with("RANK", "1.0"), HasSubstr("RANK is '1.0'"));
  EXPECT_THAT(with("RANK", " 1"), HasSubstr("RANK is ' 1'"));
  EXPECT_THAT(with("RANK", ""), HasSubstr("RANK is '', expected an integer"));
  EXPECT_THAT(with("WORLD_SIZE", "0"), HasSubstr("WORLD_SIZE is '0', expected a positive integer"));
  EXPECT_THAT(with("WORLD_SIZE", "99999999999999999999"), HasSubstr("WORLD_SIZE is '99999999999999999999'"));
  EXPECT_THAT(with("LOCAL_WORLD_SIZE", "9"), HasSubstr("LOCAL_WORLD_SIZE is '9', expected at most WORLD_SIZE (8)"));
  EXPECT_THAT(with("LOCAL_RANK", "2"),
              HasSubstr("LOCAL_RANK is '2', expected an integer in [0, 2) (LOCAL_WORLD_SIZE is 2)"));
  EXPECT_THAT(with("MASTER_PORT", "65536"), HasSubstr("MASTER_PORT is '65536', expected a TCP port in [1, 65535]"));
  EXPECT_THAT(with("MASTER_PORT", "http"), HasSubstr("MASTER_PORT is 'http'"));
  EXPECT_THAT(with("MASTER_ADDR", ""), HasSubstr("MASTER_ADDR is '', expected a host name or IP address"));
}

TEST(LaunchEnv, TorchrunOnSeveralHostsNeedsMasterAddr) {
  Vars vars = kTorchrun;
  vars.erase("MASTER_ADDR");
  EXPECT_THAT(error_of(vars), HasSubstr("MASTER_ADDR is not set, expected the host name or IP address of rank 0 "
                                        "(WORLD_SIZE is 8, more than the ranks on this host)"));
}

TEST(LaunchEnv, SlurmStepTask) {
  LaunchEnv launch = read(kSlurm);
  EXPECT_EQ(launch.source, "slurm");
  EXPECT_EQ(launch.rank, 2);
  EXPECT_EQ(launch.world_size, 4);
  EXPECT_EQ(launch.local_rank, 0);
  EXPECT_EQ(launch.local_world_size, 2);
  EXPECT_EQ(launch.master_addr, "node01");  // the step's first host, not the job's
  EXPECT_EQ(launch.master_port, slurm_job_port(123456));
  EXPECT_EQ(launch.master_port, 15000 + 3456);
}

TEST(LaunchEnv, SlurmMasterFromEnvironmentWins) {
  LaunchEnv launch = read(merged(kSlurm, {{"MASTER_ADDR", "head"}, {"MASTER_PORT", "4242"}}));
  EXPECT_EQ(launch.master_addr, "head");
  EXPECT_EQ(launch.master_port, 4242);
}

TEST(LaunchEnv, SlurmFallsBackToJobNodelistAndDefaultPort) {
  Vars vars = kSlurm;
  vars.erase("SLURM_STEP_NODELIST");
  vars.erase("SLURM_JOB_ID");
  vars["SLURM_JOB_NODELIST"] = "gpu[7-9],cpu1";
  LaunchEnv launch = read(vars);
  EXPECT_EQ(launch.master_addr, "gpu7");
  EXPECT_EQ(launch.master_port, 29500);
}

TEST(LaunchEnv, SlurmOneTaskIsOneProcess) {
  LaunchEnv launch =
      read({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_STEP_ID", "0"}, {"SLURM_JOB_ID", "7"}});
  EXPECT_EQ(launch.world_size, 1);
  EXPECT_EQ(launch.rank, 0);
  EXPECT_FALSE(launch.distributed());
}

TEST(LaunchEnv, SlurmBatchScriptWithoutSrunIsOneProcess) {
  // sbatch --ntasks=4 runs the script once: SLURM_NTASKS describes the
  // allocation, there is no step (no SLURM_STEP_ID).
  LaunchEnv launch =
      read({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"SLURM_JOB_ID", "7"}});
  EXPECT_EQ(launch.source, "none");
  EXPECT_EQ(launch.world_size, 1);
}

TEST(LaunchEnv, SlurmUnevenTasksPerNode) {
  Vars vars = kSlurm;
  vars["SLURM_STEP_NUM_TASKS"] = vars["SLURM_NTASKS"] = "7";
  vars["SLURM_STEP_TASKS_PER_NODE"] = "2(x3),1";
  vars["SLURM_NODEID"] = "3";
  vars["SLURM_PROCID"] = "6";
  LaunchEnv launch = read(vars);
  EXPECT_EQ(launch.local_world_size, 1);
  vars["SLURM_NODEID"] = "1";
  vars["SLURM_LOCALID"] = "1";
  EXPECT_EQ(read(vars).local_world_size, 2);
  vars.erase("SLURM_NODEID");
  EXPECT_THAT(error_of(vars), HasSubstr("SLURM_NODEID is not set, expected an integer in [0, 4) "
                                        "(SLURM_STEP_TASKS_PER_NODE '2(x3),1' lists 4 nodes)"));
}

TEST(LaunchEnv, SlurmLocalSizeFallbacks) {
  Vars vars = kSlurm;
  vars.erase("SLURM_STEP_TASKS_PER_NODE");
  vars["SLURM_NTASKS_PER_NODE"] = "2";
  EXPECT_EQ(read(vars).local_world_size, 2);
  vars.erase("SLURM_NTASKS_PER_NODE");
  EXPECT_THAT(error_of(vars), HasSubstr("SLURM_STEP_TASKS_PER_NODE is not set, expected it (or SLURM_NTASKS_PER_NODE) "
                                        "for a step of 4 tasks on more than one node (SLURM_STEP_NUM_NODES is 2)"));
  vars["SLURM_STEP_NUM_NODES"] = "1";
  vars["SLURM_STEP_NODELIST"] = "node01";
  vars["SLURM_PROCID"] = "3";
  vars["SLURM_LOCALID"] = "3";
  LaunchEnv launch = read(vars);
  EXPECT_EQ(launch.local_world_size, 4);
  EXPECT_EQ(launch.local_rank, 3);
}

TEST(LaunchEnv, SlurmOnOneNodeWithoutNodelistUsesLocalhost) {
  LaunchEnv launch = read({{"SLURM_PROCID", "1"},
                           {"SLURM_NTASKS", "2"},
                           {"SLURM_LOCALID", "1"},
                           {"SLURM_STEP_ID", "3"},
                           {"SLURM_NNODES", "1"}});
  EXPECT_EQ(launch.master_addr, "127.0.0.1");
  EXPECT_EQ(launch.local_world_size, 2);
}

TEST(LaunchEnv, SlurmErrorsNameTheVariable) {
  auto with = [](const std::string& name, const std::optional<std::string>& value) {
    Vars vars = kSlurm;
    if (value)
      vars[name] = *value;
    else
      vars.erase(name);
    return error_of(vars);
  };
  EXPECT_THAT(with("SLURM_PROCID", "4"),
              HasSubstr("SLURM_PROCID is '4', expected an integer in [0, 4) (SLURM_STEP_NUM_TASKS is 4)"));
  EXPECT_THAT(with("SLURM_STEP_NUM_TASKS", "x"), HasSubstr("SLURM_STEP_NUM_TASKS is 'x', expected a positive integer"));
  EXPECT_THAT(with("SLURM_LOCALID", "2"),
              HasSubstr("SLURM_LOCALID is '2', expected an integer in [0, 2) (2 tasks on this node)"));
  EXPECT_THAT(with("SLURM_LOCALID", std::nullopt), HasSubstr("SLURM_LOCALID is not set"));
  EXPECT_THAT(with("SLURM_STEP_TASKS_PER_NODE", "2(y2)"),
              HasSubstr("SLURM_STEP_TASKS_PER_NODE is '2(y2)', expected Slurm's tasks-per-node syntax"));
  EXPECT_THAT(with("SLURM_STEP_TASKS_PER_NODE", "8"),
              HasSubstr("SLURM_STEP_TASKS_PER_NODE is '8', expected at most SLURM_STEP_NUM_TASKS (4)"));
  EXPECT_THAT(
      with("SLURM_STEP_NODELIST", "node[01-02"),
      HasSubstr("SLURM_STEP_NODELIST is 'node[01-02', expected a Slurm host list such as 'node[01-04,07],gpu3'"));
  EXPECT_THAT(with("SLURM_JOB_ID", "12a"), HasSubstr("SLURM_JOB_ID is '12a', expected a non-negative integer"));
  EXPECT_THAT(with("MASTER_PORT", "-5"), HasSubstr("MASTER_PORT is '-5', expected a TCP port in [1, 65535]"));

  Vars no_tasks = kSlurm;
  no_tasks.erase("SLURM_NTASKS");
  no_tasks.erase("SLURM_STEP_NUM_TASKS");
  EXPECT_THAT(error_of(no_tasks),
              HasSubstr("SLURM_NTASKS is not set, expected the task count with SLURM_PROCID ('2')"));

  Vars no_hosts = kSlurm;
  no_hosts.erase("SLURM_STEP_NODELIST");
  no_hosts.erase("SLURM_JOB_NODELIST");
  EXPECT_THAT(error_of(no_hosts), HasSubstr("MASTER_ADDR is not set, expected a host name or IP address (or "
                                            "SLURM_STEP_NODELIST) for 4 tasks on several nodes"));
}

TEST(LaunchEnv, SlurmHostLists) {
  EXPECT_EQ(first_slurm_host("node[01-04,07],gpu3"), "node01");
  EXPECT_EQ(first_slurm_host("gpu3,node[01-04]"), "gpu3");
  EXPECT_EQ(first_slurm_host("node[007,1-3]"), "node007");
  EXPECT_EQ(first_slurm_host("rack[2-3]-n[5,9]"), "rack2-n5");
  EXPECT_EQ(first_slurm_host("c1"), "c1");
  EXPECT_EQ(first_slurm_host("node-a.example.org"), "node-a.example.org");
  EXPECT_EQ(first_slurm_host("node[9]"), "node9");
  for (const char* bad : {"", "node[01-04", "node]01[", "node[]", "node[a-b]", "node[4-1]", "node[1-]", "node[[1]]",
                          "a,,b", "a,", ",a", "node[1,]", "a b"})
    EXPECT_EQ(first_slurm_host(bad), std::nullopt) << bad;
}

TEST(LaunchEnv, SlurmJobPortRange) {
  EXPECT_EQ(slurm_job_port(0), 15000);
  EXPECT_EQ(slurm_job_port(9999), 24999);
  EXPECT_EQ(slurm_job_port(10000), 15000);
  EXPECT_EQ(slurm_job_port(4123456789), 15000 + 6789);
}

TEST(LaunchEnv, OpenMpi) {
  LaunchEnv launch = read(kOpenMpi);
  EXPECT_EQ(launch.source, "openmpi");
  EXPECT_EQ(launch.rank, 1);
  EXPECT_EQ(launch.world_size, 2);
  EXPECT_EQ(launch.local_rank, 1);
  EXPECT_EQ(launch.local_world_size, 2);
  EXPECT_EQ(launch.master_addr, "127.0.0.1");  // every rank on this host
  EXPECT_EQ(launch.master_port, 29500);
  EXPECT_EQ(read(merged(kOpenMpi, {{"MASTER_PORT", "30000"}})).master_port, 30000);
}

TEST(LaunchEnv, OpenMpiOnSeveralHostsNeedsMasterAddr) {
  Vars vars = merged(kOpenMpi, {{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}});
  EXPECT_THAT(error_of(vars), HasSubstr("MASTER_ADDR is not set, expected the host name or IP address of rank 0 "
                                        "(OMPI_COMM_WORLD_SIZE is 4, more than the ranks on this host)"));
  vars["MASTER_ADDR"] = "host0";
  EXPECT_EQ(read(vars).master_addr, "host0");
}

TEST(LaunchEnv, OpenMpiErrorsNameTheVariable) {
  Vars partial = kOpenMpi;
  partial.erase("OMPI_COMM_WORLD_LOCAL_SIZE");
  EXPECT_THAT(error_of(partial), HasSubstr("OMPI_COMM_WORLD_LOCAL_SIZE is not set, expected it with "
                                           "OMPI_COMM_WORLD_RANK ('1'): Open MPI's mpirun sets"));
  EXPECT_THAT(error_of(merged(kOpenMpi, {{"OMPI_COMM_WORLD_RANK", "2"}})),
              HasSubstr("OMPI_COMM_WORLD_RANK is '2', expected an integer in [0, 2) (OMPI_COMM_WORLD_SIZE is 2)"));
  EXPECT_THAT(error_of(merged(kOpenMpi, {{"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}})),
              HasSubstr("OMPI_COMM_WORLD_LOCAL_SIZE is '3', expected at most OMPI_COMM_WORLD_SIZE (2)"));
  EXPECT_THAT(error_of(merged(kOpenMpi, {{"OMPI_COMM_WORLD_LOCAL_RANK", "x"}})),
              HasSubstr("OMPI_COMM_WORLD_LOCAL_RANK is 'x'"));
}

}  // namespace launch_env_test
}  // namespace recmod::dist
