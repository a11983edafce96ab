// Fast defaults: a recmod that computes runs with OMP_WAIT_POLICY=PASSIVE and
// glibc malloc thresholds (GLIBC_TUNABLES) in its environment unless the user
// chose them (app/commands/runtime.cpp re-executes the binary once, before
// libgomp and ld.so read the variables). Checked on
// a live process through /proc/PID/environ and /proc/PID/cmdline: the process
// is held in main by a FIFO given as its data file, which its open() waits on.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/run_recmod.h"

extern char** environ;

namespace recmod::testing {
namespace fast_defaults_cli_test {

using ::testing::Contains;
using ::testing::ElementsAreArray;
using ::testing::Not;
using ::testing::StartsWith;

/// The NUL-separated strings of /proc/PID/<file>.
std::vector<std::string> proc_strings(pid_t pid, const std::string& file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file, std::ios::binary);
  std::vector<std::string> out;
  std::string item;
  while (std::getline(in, item, '\0')) out.push_back(item);
  return out;
}

struct Seen {
  std::vector<std::string> environ, cmdline;
  std::string failure;  // empty when the process was caught in main
};

/// Starts recmod with `args` and this test's environment minus the OpenMP
/// wait and malloc variables, plus `extra_env`; waits (60 s at most) until it opens the
/// FIFO `fifo` for reading, i.e. until it runs main() for good; reads its
/// environment and command line; kills it.
Seen catch_in_main(const std::vector<std::string>& args, const std::string& fifo,
                   const std::vector<std::string>& extra_env) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string var = *e;
    if (var.rfind("OMP_WAIT_POLICY=", 0) == 0 || var.rfind("GOMP_SPINCOUNT=", 0) == 0 ||
        var.rfind("RECMOD_REEXECUTED=", 0) == 0 || var.rfind("GLIBC_TUNABLES=", 0) == 0 ||
        var.rfind("MALLOC_", 0) == 0)
      continue;
    env.push_back(var);
  }
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> argv_c, env_c;
  for (const auto& a : args) argv_c.push_back(const_cast<char*>(a.c_str()));
  argv_c.push_back(nullptr);
  for (const auto& e : env) env_c.push_back(const_cast<char*>(e.c_str()));
  env_c.push_back(nullptr);

  Seen seen;
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execve(args[0].c_str(), argv_c.data(), env_c.data());
    _exit(127);
  }
  if (pid < 0) {
    seen.failure = "fork failed";
    return seen;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int fd = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // ENXIO until a reader has it open
    if (fd >= 0) break;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      seen.failure = "recmod exited (status " + std::to_string(status) + ") before opening its data";
      return seen;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (fd < 0) {
    seen.failure = "recmod did not open its data within 60 s";
  } else {
    seen.environ = proc_strings(pid, "environ");
    seen.cmdline = proc_strings(pid, "cmdline");
    ::close(fd);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return seen;
}

struct FastDefaults : ::testing::Test {
  void SetUp() override {
    // One directory per test: ctest may run them at the same time.
    dir = fresh_dir(std::string("fast_defaults_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    config = write_file(dir + "/tiny.yaml", tiny_model_yaml());
    fifo = dir + "/data.fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
    // A space in an argument: argv must come through the re-exec unchanged.
    args = {RECMOD_BIN, "train", config, "--data", fifo, "--out", dir + "/run with space", "--steps", "1"};
  }
  std::string dir, config, fifo;
  std::vector<std::string> args;
};

TEST_F(FastDefaults, PassiveWaitPolicyWhenTheUserSetsNone) {
  const Seen seen = catch_in_main(args, fifo, {});
  ASSERT_EQ(seen.failure, "");
  EXPECT_THAT(seen.environ, Contains("OMP_WAIT_POLICY=PASSIVE"));
  EXPECT_THAT(seen.cmdline, ElementsAreArray(args));
  // The rest of the environment came through too.
  EXPECT_THAT(seen.environ, Contains(StartsWith("PATH=")));
}

TEST_F(FastDefaults, MallocThresholdsWhenTheUserSetsNone) {
  const Seen seen = catch_in_main(args, fifo, {});
  ASSERT_EQ(seen.failure, "");
  EXPECT_THAT(seen.environ, Contains(StartsWith("GLIBC_TUNABLES=glibc.malloc.mmap_threshold=")));
  // ld.so cuts the value at each ':' in place as it parses it, so
  // /proc/PID/environ shows the second tunable as an entry of its own.
  EXPECT_THAT(seen.environ, Contains(::testing::HasSubstr("glibc.malloc.trim_threshold=")));
}

TEST_F(FastDefaults, UsersWaitPolicyIsKept) {
  const Seen seen = catch_in_main(args, fifo, {"OMP_WAIT_POLICY=ACTIVE"});
  ASSERT_EQ(seen.failure, "");
  EXPECT_THAT(seen.environ, Contains("OMP_WAIT_POLICY=ACTIVE"));
  EXPECT_THAT(seen.environ, Not(Contains("OMP_WAIT_POLICY=PASSIVE")));
  // Re-executed for the malloc thresholds only.
  EXPECT_THAT(seen.environ, Contains(StartsWith("GLIBC_TUNABLES=glibc.malloc.")));
  EXPECT_THAT(seen.cmdline, ElementsAreArray(args));
}

TEST_F(FastDefaults, UsersTunablesAreKept) {
  const Seen seen = catch_in_main(args, fifo, {"GLIBC_TUNABLES=glibc.malloc.arena_max=2"});
  ASSERT_EQ(seen.failure, "");
  EXPECT_THAT(seen.environ, Contains("GLIBC_TUNABLES=glibc.malloc.arena_max=2"));
  EXPECT_THAT(seen.environ, Not(Contains(StartsWith("GLIBC_TUNABLES=glibc.malloc.mmap_threshold="))));
  EXPECT_THAT(seen.environ, Contains("OMP_WAIT_POLICY=PASSIVE"));
}

TEST_F(FastDefaults, NoReexecWhenTheUserSetsBoth) {
  const Seen seen = catch_in_main(args, fifo, {"OMP_WAIT_POLICY=ACTIVE", "MALLOC_TRIM_THRESHOLD_=1000000"});
  ASSERT_EQ(seen.failure, "");
  EXPECT_THAT(seen.environ, Not(Contains(StartsWith("RECMOD_REEXECUTED="))));  // not re-executed
  EXPECT_THAT(seen.environ, Not(Contains(StartsWith("GLIBC_TUNABLES="))));
  EXPECT_THAT(seen.cmdline, ElementsAreArray(args));
}

TEST_F(FastDefaults, UsersSpinCountIsKept) {
  const Seen seen = catch_in_main(args, fifo, {"GOMP_SPINCOUNT=10000"});
  ASSERT_EQ(seen.failure, "");
  EXPECT_THAT(seen.environ, Contains("GOMP_SPINCOUNT=10000"));
  EXPECT_THAT(seen.environ, Not(Contains(StartsWith("OMP_WAIT_POLICY="))));
}

TEST(FastDefaultsCli, ACommandStillRunsAfterTheReexec) {
  // End to end through the re-exec: exit code and output as usual.
  const std::string dir = fresh_dir("fast_defaults_run");
  const auto config = write_file(dir + "/tiny.yaml", tiny_model_yaml());
  write_synthetic(dir + "/d.rmb", "--rows 300 --dense 2 --sparse 3 --cardinality 50");
  auto r = run_recmod("train " + config + " --data " + dir + "/d.rmb --out " + dir + "/run --steps 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + config + " --data " + dir + "/missing.rmb --out " + dir + "/run2");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, ::testing::HasSubstr("missing.rmb: cannot open"));
}

}  // namespace fast_defaults_cli_test
}  // namespace recmod::testing
