#pragma once
// `recmod <command> ... --nproc N`: the one-host launcher. The supervisor
// process starts N copies of recmod with torchrun's environment, relays their
// output line by line with a "[rank K] " prefix, forwards SIGINT/SIGTERM, and
// stops everything when one rank fails (torchrun's role; Debian's own
// torchrun is broken, so recmod does not depend on it).
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "recmod/dist/launch_env.h"

namespace recmod::dist {

/// Set (to "1") in every rank started by run_local_ranks, so that a rank
/// never launches ranks of its own.
inline constexpr const char* kLocalLaunchVariable = "RECMOD_LOCAL_LAUNCH";

struct LocalLaunchOptions {
  int nproc = 1;
  /// Run as is when it contains a '/', else searched in PATH (as execvp).
  /// For recmod itself use current_executable(), not argv[0].
  std::string executable;
  std::vector<std::string> args;  // argv[1..]
  int master_port = 0;            // 0: pick a free port on 127.0.0.1
  /// After the first failure, how long the others get to exit on their own
  /// before SIGTERM, then SIGKILL (kill_after later).
  std::chrono::milliseconds grace{std::chrono::seconds(30)};
  int threads_per_rank = 0;  // >0: OMP_NUM_THREADS for each rank
  /// After the SIGTERM that follows a failure, how long before SIGKILL.
  std::chrono::milliseconds kill_after{std::chrono::seconds(5)};
};

/// Runs `executable args...` nproc times and waits for all of them.
///
/// Each rank gets the supervisor's environment plus RANK, WORLD_SIZE,
/// LOCAL_RANK, LOCAL_WORLD_SIZE (= nproc), MASTER_ADDR=127.0.0.1,
/// MASTER_PORT, RECMOD_LOCAL_LAUNCH=1 and (threads_per_rank > 0)
/// OMP_NUM_THREADS; stdin is /dev/null. Each rank runs in a process group of
/// its own (so a terminal's Ctrl-C reaches the ranks once, through the
/// supervisor) and is killed (SIGKILL) if the supervisor dies.
///
/// Output: every line a rank writes to stdout (stderr) is written to `out`
/// (`err`) as "[rank K] <line>\n", whole lines only, flushed as they come; a
/// last line without '\n' is written at the end.
///
/// Signals: while it runs, SIGINT and SIGTERM received by this process (and
/// request_local_ranks_stop) are forwarded to every rank's process group;
/// the previous handlers are restored on return.
///
/// Failure: when a rank exits non-zero or by a signal, the others get
/// `grace` to exit on their own, then SIGTERM, then SIGKILL after
/// `kill_after`. Returns the failing rank's exit code (128 + signal number
/// when killed by a signal) after writing one line to `err`:
///   recmod: rank K exited with code C (its last message: <last stderr line>)
/// Returns 0 when every rank exits 0.
///
/// Every rank is reaped before it returns or throws (no zombie, no orphan).
/// Throws UsageError for bad options (nproc < 1, a port outside [0, 65535],
/// threads_per_rank < 0, an executable that cannot be found), Error when the
/// system refuses (fork, pipe) or when another run_local_ranks is running in
/// this process. Call it from the thread that lives longest (main): the
/// ranks' parent-death signal fires when the calling thread ends.
int run_local_ranks(const LocalLaunchOptions& options, std::ostream& out, std::ostream& err);

/// What the SIGINT/SIGTERM handler of run_local_ranks calls: forwards
/// `signal` to every rank of the running run_local_ranks (async-signal-safe;
/// callable from any thread). Does nothing when none is running.
void request_local_ranks_stop(int signal);

/// `args` without "--nproc N" and "--nproc=N" (nothing after "--" is
/// touched), for the ranks' command line.
std::vector<std::string> args_without_nproc(const std::vector<std::string>& args);

/// True in a rank started by run_local_ranks (RECMOD_LOCAL_LAUNCH set,
/// non-empty and not "0").
bool launched_by_recmod(const EnvLookup& env = process_env);

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// the port, close). Throws Error when no socket can be bound.
int free_local_port();

/// The running binary (/proc/self/exe), to start more of it.
std::string current_executable();

}  // namespace recmod::dist
