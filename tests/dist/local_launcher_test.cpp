#include "recmod/dist/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/dist/lost_peer.h"
#include "support/test_util.h"

namespace recmod::dist {
namespace local_launcher_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Outcome {
  int code = -1;
  std::string out, err;
  double seconds = 0;
};

/// Runs `/bin/sh -c script sh dir` on nproc ranks.
Outcome run_sh(int nproc, const std::string& script, LocalLaunchOptions options = {}, const std::string& dir = "") {
  options.nproc = nproc;
  options.executable = "/bin/sh";
  options.args = {"-c", script, "sh", dir};
  std::ostringstream out, err;
  Outcome run;
  auto start = Clock::now();
  run.code = run_local_ranks(options, out, err);
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.out = out.str();
  run.err = err.str();
  return run;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// No child of this process is left, zombie or running.
void expect_no_children() {
  int status = 0;
  errno = 0;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

/// A temporary directory the ranks write marker files to.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "recmod-launcher-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  // remove_tree, not fs::remove_all: see tests/support/test_util.h (these
  // four tests died of SIGSEGV on the GPU machine's PyTorch 2.11 wheel).
  ~TempDir() { test::remove_tree(path_); }
  const std::string& path() const { return path_; }
  /// Waits (up to `limit`) until every file exists.
  bool wait_for(const std::vector<std::string>& names, std::chrono::seconds limit = std::chrono::seconds(30)) const {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      bool all = true;
      for (const auto& name : names) all = all && fs::exists(fs::path(path_) / name);
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(fs::path(path_) / name);
    std::string text;
    std::getline(in, text);
    return text;
  }

 private:
  std::string path_;
};

/// True once `pid` no longer exists (it may linger as init's zombie a moment).
bool gone_within(pid_t pid, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(LocalLauncher, EachRankSeesTorchrunEnvironment) {
  LocalLaunchOptions options;
  options.threads_per_rank = 2;
  Outcome run = run_sh(3,
                       "echo \"rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK lws=$LOCAL_WORLD_SIZE addr=$MASTER_ADDR "
                       "launch=$RECMOD_LOCAL_LAUNCH omp=$OMP_NUM_THREADS stdin=$(cat)\"; echo \"port=$MASTER_PORT\"",
                       options);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  std::set<std::string> ports;
  std::multiset<std::string> lines;
  for (const auto& line : lines_of(run.out)) {
    auto at = line.find("port=");
    if (at != std::string::npos) {
      ports.insert(line.substr(at + 5));
    } else {
      lines.insert(line);
    }
  }
  EXPECT_EQ(lines, (std::multiset<std::string>{
                       "[rank 0] rank=0 world=3 local=0 lws=3 addr=127.0.0.1 launch=1 omp=2 stdin=",
                       "[rank 1] rank=1 world=3 local=1 lws=3 addr=127.0.0.1 launch=1 omp=2 stdin=",
                       "[rank 2] rank=2 world=3 local=2 lws=3 addr=127.0.0.1 launch=1 omp=2 stdin=",
                   }));
  ASSERT_EQ(ports.size(), 1u) << run.out;  // one port for all ranks
  int port = std::stoi(*ports.begin());
  EXPECT_GT(port, 0);
  EXPECT_LE(port, 65535);
  expect_no_children();
}

TEST(LocalLauncher, GivenMasterPortIsUsed) {
  LocalLaunchOptions options;
  options.master_port = 23456;
  Outcome run = run_sh(2, "echo $MASTER_PORT", options);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(lines_of(run.out), ::testing::UnorderedElementsAre("[rank 0] 23456", "[rank 1] 23456"));
}

TEST(LocalLauncher, PrefixesEveryLineOfStdoutAndStderr) {
  Outcome run = run_sh(1, "printf 'a\\nb\\n'; printf 'e1\\n' >&2; printf 'e2' >&2; printf '\\nc\\npartial'");
  ASSERT_EQ(run.code, 0);
  EXPECT_THAT(lines_of(run.out),
              ElementsAre("[rank 0] a", "[rank 0] b", "[rank 0] ", "[rank 0] c", "[rank 0] partial"));
  EXPECT_THAT(lines_of(run.err), ElementsAre("[rank 0] e1", "[rank 0] e2"));
  EXPECT_EQ(run.out.back(), '\n');
}

TEST(LocalLauncher, LongLinesOfSeveralRanksDoNotInterleave) {
  // 200 lines of 3000 characters per rank, each line made of the rank's digit.
  Outcome run = run_sh(3,
                       "L=$(printf '%3000s' '' | tr ' ' \"$RANK\"); i=0; "
                       "while [ $i -lt 200 ]; do echo \"$L\"; echo \"$L\" >&2; i=$((i+1)); done");
  ASSERT_EQ(run.code, 0) << run.err.substr(0, 500);
  for (const std::string* text : {&run.out, &run.err}) {
    std::map<char, int> count;
    for (const auto& line : lines_of(*text)) {
      ASSERT_EQ(line.size(), 9u + 3000u) << line.substr(0, 40);
      char digit = line[6];
      ASSERT_EQ(line.substr(0, 9), std::string("[rank ") + digit + "] ");
      ASSERT_EQ(line.find_first_not_of(digit, 9), std::string::npos) << line.substr(0, 40);
      ++count[digit];
    }
    EXPECT_EQ(count, (std::map<char, int>{{'0', 200}, {'1', 200}, {'2', 200}}));
  }
}

TEST(LocalLauncher, FailingRankStopsTheOthersAndGivesItsCode) {
  TempDir dir;
  LocalLaunchOptions options;
  options.grace = std::chrono::milliseconds(200);
  options.kill_after = std::chrono::seconds(2);
  // Rank 1 fails once every rank is up; the others sleep (with a grandchild
  // that must not outlive them).
  Outcome run = run_sh(3,
                       "if [ \"$RANK\" = 1 ]; then "
                       "  while [ ! -e \"$1/gc.0\" ] || [ ! -e \"$1/gc.2\" ]; do sleep 0.05; done; "
                       "  echo 'first' >&2; echo 'boom: rank 1 gave up' >&2; exit 7; "
                       "fi; "
                       "sleep 30 & echo $! > \"$1/gc.tmp.$RANK\"; mv \"$1/gc.tmp.$RANK\" \"$1/gc.$RANK\"; wait",
                       options, dir.path());
  EXPECT_EQ(run.code, 7);
  EXPECT_LT(run.seconds, 25.0);
  EXPECT_THAT(run.err, HasSubstr("recmod: rank 1 exited with code 7 (its last message: boom: rank 1 gave up)\n"));
  EXPECT_EQ(lines_of(run.err).back(), "recmod: rank 1 exited with code 7 (its last message: boom: rank 1 gave up)");
  expect_no_children();
  for (const char* name : {"gc.0", "gc.2"}) {
    pid_t grandchild = std::stoi(dir.read(name));
    EXPECT_TRUE(gone_within(grandchild, std::chrono::seconds(10))) << "the grandchild of " << name << " survived";
  }
}

// A rank fails; another rank's next collective fails with it and that rank
// may end first. The supervisor names the rank with the cause (it ended on
// its own, before the stop, with another message), not the one that only
// says it lost a peer, nor one the supervisor stopped.
TEST(LocalLauncher, NamesTheFailingRankRatherThanOneThatLostItsPeer) {
  LocalLaunchOptions options;
  options.grace = std::chrono::seconds(3);
  const std::string lost = std::string("recmod: rank 0: barrier with the other ranks failed: closed (") + kLostPeerNote + ")";
  Outcome run = run_sh(3,
                       "if [ \"$RANK\" = 0 ]; then echo '" + lost + "' >&2; exit 1; fi; "
                       "if [ \"$RANK\" = 2 ]; then sleep 0.5; echo 'recmod: model.pt: bad id' >&2; exit 2; fi; "
                       "echo 'step 1' >&2; sleep 30",
                       options);
  EXPECT_EQ(run.code, 2);
  EXPECT_THAT(run.err, HasSubstr("recmod: rank 2 exited with code 2 (its last message: recmod: model.pt: bad id)"));
  EXPECT_THAT(run.err, HasSubstr("[rank 0] " + lost));  // still shown as the rank wrote it
  expect_no_children();
}

TEST(LocalLauncher, RankKilledBySignalGives128PlusSignal) {
  LocalLaunchOptions options;
  options.grace = std::chrono::milliseconds(100);
  Outcome run = run_sh(2, "if [ \"$RANK\" = 0 ]; then echo 'about to die' >&2; kill -9 $$; fi; sleep 30", options);
  EXPECT_EQ(run.code, 128 + SIGKILL);
  EXPECT_LT(run.seconds, 25.0);
  EXPECT_THAT(run.err,
              HasSubstr("recmod: rank 0 exited with code 137 (killed by signal 9; its last message: about to die)"));
  expect_no_children();
}

TEST(LocalLauncher, OthersThatExitWithinGraceAreNotKilled) {
  LocalLaunchOptions options;
  options.grace = std::chrono::seconds(60);
  Outcome run = run_sh(2, "if [ \"$RANK\" = 1 ]; then exit 3; fi; sleep 0.5; echo 'finished on my own'", options);
  EXPECT_EQ(run.code, 3);
  EXPECT_THAT(run.out, HasSubstr("[rank 0] finished on my own\n"));
  EXPECT_THAT(run.err, HasSubstr("recmod: rank 1 exited with code 3 (it wrote nothing to stderr)"));
  EXPECT_LT(run.seconds, 30.0);
}

TEST(LocalLauncher, RanksIgnoringSigtermAreKilled) {
  TempDir dir;
  LocalLaunchOptions options;
  options.grace = std::chrono::milliseconds(100);
  options.kill_after = std::chrono::milliseconds(500);
  Outcome run = run_sh(2,
                       "if [ \"$RANK\" = 1 ]; then while [ ! -e \"$1/ready\" ]; do sleep 0.05; done; exit 5; fi; "
                       "trap '' TERM; touch \"$1/ready\"; sleep 30",
                       options, dir.path());
  EXPECT_EQ(run.code, 5);
  EXPECT_LT(run.seconds, 25.0);
  expect_no_children();
}

TEST(LocalLauncher, AllRanksSucceeding) {
  Outcome run = run_sh(4, "exit 0");
  EXPECT_EQ(run.code, 0);
  EXPECT_EQ(run.err, "");
  expect_no_children();
}

/// Ranks that trap `signal_name`, say so and exit 3; `stop` is called once
/// every rank is waiting.
Outcome run_until_stopped(const std::string& signal_name, const std::function<void()>& stop) {
  TempDir dir;
  std::thread stopper([&] {
    if (dir.wait_for({"ready.0", "ready.1"})) stop();
  });
  Outcome run = run_sh(2,
                       "trap 'echo \"stopped by " + signal_name + "\"; kill $! 2>/dev/null; exit 3' " + signal_name +
                           "; sleep 30 & touch \"$1/ready.$RANK\"; wait",
                       {}, dir.path());
  stopper.join();
  return run;
}

TEST(LocalLauncher, StopRequestIsForwardedToEveryRank) {
  Outcome run = run_until_stopped("TERM", [] { request_local_ranks_stop(SIGTERM); });
  EXPECT_EQ(run.code, 3);
  EXPECT_LT(run.seconds, 25.0);
  EXPECT_THAT(run.out, HasSubstr("[rank 0] stopped by TERM\n"));
  EXPECT_THAT(run.out, HasSubstr("[rank 1] stopped by TERM\n"));
  expect_no_children();
}

TEST(LocalLauncher, SigintToTheSupervisorIsForwardedAndHandlerRestored) {
  struct sigaction before {};
  sigaction(SIGINT, nullptr, &before);
  Outcome run = run_until_stopped("INT", [] { kill(getpid(), SIGINT); });
  EXPECT_EQ(run.code, 3);
  EXPECT_LT(run.seconds, 25.0);
  EXPECT_THAT(run.out, HasSubstr("[rank 0] stopped by INT\n"));
  EXPECT_THAT(run.out, HasSubstr("[rank 1] stopped by INT\n"));
  struct sigaction after {};
  sigaction(SIGINT, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
  expect_no_children();
}

TEST(LocalLauncher, RanksThatStopOrDieOfAForwardedSigintAreNotAFailure) {
  // Ctrl-C while ranks start up: rank 0 stops as recmod train does (exit
  // 130); rank 1 has no handler yet and dies of the forwarded SIGINT itself.
  // Neither is a failure to report: exit 130, nothing on stderr.
  TempDir dir;
  std::thread stopper([&] {
    if (dir.wait_for({"ready.0", "ready.1"})) request_local_ranks_stop(SIGINT);
  });
  Outcome run = run_sh(2,
                       "if [ \"$RANK\" = 0 ]; then trap 'kill $! 2>/dev/null; exit 130' INT; sleep 30 & "
                       "touch \"$1/ready.$RANK\"; wait; else touch \"$1/ready.$RANK\"; exec sleep 30; fi",
                       {}, dir.path());
  stopper.join();
  EXPECT_EQ(run.code, 130);
  EXPECT_LT(run.seconds, 25.0);
  EXPECT_EQ(run.err, "");
  expect_no_children();
  // a rank killed by another signal than the forwarded one still is
  TempDir dir2;
  std::thread stopper2([&] {
    if (dir2.wait_for({"ready.0", "ready.1"})) request_local_ranks_stop(SIGINT);
  });
  run = run_sh(2,
               "if [ \"$RANK\" = 0 ]; then trap 'kill $! 2>/dev/null; exit 130' INT; sleep 30 & "
               "touch \"$1/ready.$RANK\"; wait; else trap 'kill $! 2>/dev/null; kill -KILL $$' INT; touch \"$1/ready.$RANK\"; "
               "sleep 30 & wait; fi",
               {}, dir2.path());
  stopper2.join();
  EXPECT_EQ(run.code, 128 + SIGKILL);
  EXPECT_THAT(run.err, HasSubstr("rank 1 exited with code 137 (killed by signal 9"));
  expect_no_children();
}

TEST(LocalLauncher, StopRequestWithoutARunDoesNothing) {
  request_local_ranks_stop(SIGTERM);  // no run: must not affect the next one
  Outcome run = run_sh(2, "sleep 0.2; echo ok");
  EXPECT_EQ(run.code, 0);
  EXPECT_THAT(lines_of(run.out), ::testing::UnorderedElementsAre("[rank 0] ok", "[rank 1] ok"));
}

TEST(LocalLauncher, ExecFailureIsTheRanksError) {
  // A directory passes access(X_OK) but execve refuses it.
  LocalLaunchOptions options;
  options.nproc = 1;
  options.executable = "/";
  std::ostringstream out, err;
  EXPECT_EQ(run_local_ranks(options, out, err), 127);
  EXPECT_THAT(err.str(),
              HasSubstr("recmod: rank 0 exited with code 127 (its last message: recmod: cannot execute '/'"));
  expect_no_children();
}

TEST(LocalLauncher, BadOptionsAreUsageErrors) {
  std::ostringstream out, err;
  auto message = [&](const LocalLaunchOptions& options) -> std::string {
    try {
      run_local_ranks(options, out, err);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "no UsageError";
  };
  LocalLaunchOptions options;
  options.executable = "/bin/true";
  options.nproc = 0;
  EXPECT_THAT(message(options), HasSubstr("--nproc must be at least 1, got 0"));
  options.nproc = 1;
  options.master_port = 70000;
  EXPECT_THAT(message(options), HasSubstr("master port must be in [0, 65535]"));
  options.master_port = 0;
  options.executable = "/nonexistent/recmod";
  EXPECT_THAT(message(options), HasSubstr("cannot execute '/nonexistent/recmod'"));
  options.executable = "recmod-no-such-program";
  EXPECT_THAT(message(options), HasSubstr("cannot find 'recmod-no-such-program' in PATH"));
  options.executable = "true";  // found in PATH
  EXPECT_EQ(run_local_ranks(options, out, err), 0);
  expect_no_children();
}

TEST(LocalLauncher, ArgsWithoutNproc) {
  using V = std::vector<std::string>;
  EXPECT_EQ(args_without_nproc(V{"train", "cfg.yaml", "--nproc", "2", "--steps", "5"}),
            (V{"train", "cfg.yaml", "--steps", "5"}));
  EXPECT_EQ(args_without_nproc(V{"train", "--nproc=4", "cfg.yaml"}), (V{"train", "cfg.yaml"}));
  EXPECT_EQ(args_without_nproc(V{"train", "cfg.yaml", "--nproc"}), (V{"train", "cfg.yaml"}));
  EXPECT_EQ(args_without_nproc(V{"train", "--nprocs", "2"}), (V{"train", "--nprocs", "2"}));
  EXPECT_EQ(args_without_nproc(V{"train", "--", "--nproc", "2"}), (V{"train", "--", "--nproc", "2"}));
  EXPECT_EQ(args_without_nproc(V{}), V{});
}

TEST(LocalLauncher, LaunchedByRecmod) {
  auto env = [](std::optional<std::string> value) {
    return [value](const std::string& name) -> std::optional<std::string> {
      return name == kLocalLaunchVariable ? value : std::nullopt;
    };
  };
  EXPECT_TRUE(launched_by_recmod(env("1")));
  EXPECT_FALSE(launched_by_recmod(env(std::nullopt)));
  EXPECT_FALSE(launched_by_recmod(env("")));
  EXPECT_FALSE(launched_by_recmod(env("0")));
}

TEST(LocalLauncher, FreeLocalPortCanBeBound) {
  int port = free_local_port();
  ASSERT_GT(port, 0);
  ASSERT_LE(port, 65535);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  close(fd);
}

TEST(LocalLauncher, CurrentExecutableIsThisBinary) {
  EXPECT_TRUE(fs::equivalent(current_executable(), "/proc/self/exe"));
}

}  // namespace local_launcher_test
}  // namespace recmod::dist
