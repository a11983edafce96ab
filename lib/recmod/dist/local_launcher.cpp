#include "recmod/dist/local_launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/dist/lost_peer.h"

extern char** environ;

namespace recmod::dist {
namespace {

using Clock = std::chrono::steady_clock;

/// A longer line than this is written in pieces (a rank printing without '\n').
constexpr size_t kMaxLine = 64 * 1024;
constexpr auto kPollInterval = std::chrono::milliseconds(50);

[[noreturn]] void throw_system_error(const std::string& what) {
  throw Error(str_cat("recmod --nproc: ", what, ": ", std::strerror(errno)));
}

// ---- stop requests (signal handler side) -----------------------------------

std::atomic<int> g_stop_signal{0};
std::atomic<unsigned> g_stop_requests{0};
std::atomic<int> g_wake_write{-1};
std::atomic<bool> g_running{false};

/// The self-pipe that wakes the supervisor's poll; created once and kept for
/// the life of the process, so a late request never writes to a reused fd.
int wake_read_fd() {
  static const int fd = [] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_system_error("cannot create a pipe");
    g_wake_write.store(fds[1]);
    return fds[0];
  }();
  return fd;
}

void drain(int fd) {
  char buffer[256];
  while (read(fd, buffer, sizeof buffer) > 0) {
  }
}

extern "C" void forward_signal_handler(int signal) {
  request_local_ranks_stop(signal);
}

/// Installs the forwarding handler for SIGINT and SIGTERM; restores the
/// previous ones when it goes.
class SignalScope {
 public:
  SignalScope() {
    struct sigaction action {};
    action.sa_handler = forward_signal_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

/// Marks this process's one run_local_ranks as running.
class RunningFlag {
 public:
  RunningFlag() {
    if (g_running.exchange(true)) throw Error("recmod --nproc: run_local_ranks is already running in this process");
  }
  ~RunningFlag() { g_running.store(false); }
  RunningFlag(const RunningFlag&) = delete;
  RunningFlag& operator=(const RunningFlag&) = delete;
};

// ---- the ranks -------------------------------------------------------------

struct Stream {
  int fd = -1;
  std::string partial;
  std::ostream* sink = nullptr;
};

struct Rank {
  int index = 0;
  pid_t pid = -1;
  bool reaped = false;
  bool ended_before_term = false;  // before the supervisor sent SIGTERM to stop the run
  int status = 0;
  Stream streams[2];  // stdout, stderr
  std::string last_error_line;
};

std::string resolve_executable(const std::string& executable) {
  if (executable.empty()) throw UsageError("recmod --nproc: no executable to launch");
  if (executable.find('/') != std::string::npos) {
    if (access(executable.c_str(), X_OK) != 0)
      throw UsageError(str_cat("recmod --nproc: cannot execute '", executable, "': ", std::strerror(errno)));
    return executable;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = dirs.substr(start, colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + executable;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  throw UsageError(str_cat("recmod --nproc: cannot find '", executable, "' in PATH"));
}

/// What a child writes before _exit(127) when execve fails; composed before
/// fork, as only async-signal-safe calls may run between fork and exec.
const char* errno_text(int error) {
  switch (error) {
    case ENOENT:
      return "No such file or directory";
    case EACCES:
      return "Permission denied";
    case ENOEXEC:
      return "Exec format error";
    case ENOMEM:
      return "Cannot allocate memory";
    case E2BIG:
      return "Argument list too long";
    case ETXTBSY:
      return "Text file busy";
    default:
      return "execve failed";
  }
}

void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

/// dup2 that also works when `from` already is `to` (then it only clears
/// FD_CLOEXEC); async-signal-safe.
void redirect(int from, int to) {
  if (from == to) {
    fcntl(to, F_SETFD, fcntl(to, F_GETFD) & ~FD_CLOEXEC);
  } else {
    dup2(from, to);
  }
}

/// argv/envp as execve wants them; the strings live in the vectors.
struct ExecArgs {
  std::vector<std::string> strings_argv, strings_env;
  std::vector<char*> argv, envp;
  void finish() {
    for (auto& s : strings_argv) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : strings_env) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
};

class Supervisor {
 public:
  /// `forwarded`: the stop requests counted before this run (not for it).
  Supervisor(const LocalLaunchOptions& options, std::ostream& out, std::ostream& err, unsigned forwarded)
      : options_(options), out_(out), err_(err), forwarded_(forwarded) {}

  /// Kills and reaps whatever is still running (an exception got here).
  ~Supervisor() {
    for (auto& rank : ranks_) {
      if (rank.pid > 0 && !rank.reaped) {
        kill(-rank.pid, SIGKILL);
        kill(rank.pid, SIGKILL);
        int status = 0;
        while (waitpid(rank.pid, &status, 0) < 0 && errno == EINTR) {
        }
        rank.reaped = true;
      }
      for (auto& stream : rank.streams) close_stream(stream);
    }
    if (dev_null_ >= 0) close(dev_null_);
  }
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  int run() {
    const std::string path = resolve_executable(options_.executable);
    const int port = options_.master_port > 0 ? options_.master_port : free_local_port();
    dev_null_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dev_null_ < 0) throw_system_error("cannot open /dev/null");

    const int wake = wake_read_fd();

    ranks_.resize(static_cast<size_t>(options_.nproc));
    for (int k = 0; k < options_.nproc; ++k) spawn(k, path, port);

    loop(wake);
    for (auto& rank : ranks_)
      for (auto& stream : rank.streams) finish_stream(rank, stream);
    out_.flush();
    err_.flush();

    if (!failing_) return 0;
    // A forwarded Ctrl-C that every rank answered by stopping is not a
    // failure to report: exit 130, as `recmod train` does after its
    // checkpoint, or death by the forwarded signal itself, as a rank still
    // starting up (before its handler is installed) dies, like one recmod
    // process would (a rank that had just finished, exit 0, is fine too).
    // Otherwise the rank to name is the first that did neither, unless its
    // message only says that another rank went away and another rank failed
    // on its own (before the stop) saying something else: the cause (it
    // failed, the others' next collective failed with it, and either may
    // end first).
    const auto ended_well = [this](const Rank& r) {
      if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) return true;
      return !forwarded_signals_.empty() &&
             ((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 130) ||
              (WIFSIGNALED(r.status) && forwarded_signals_.count(WTERMSIG(r.status)) > 0));
    };
    if (std::all_of(ranks_.begin(), ranks_.end(), ended_well)) return 130;
    const Rank* named = &ranks_[static_cast<size_t>(*failing_)];
    if (ended_well(*named)) named = &*std::find_if_not(ranks_.begin(), ranks_.end(), ended_well);
    const auto only_lost_a_peer = [](const Rank& r) {
      return r.last_error_line.find(kLostPeerNote) != std::string::npos;
    };
    if (only_lost_a_peer(*named)) {
      const auto cause = std::find_if(ranks_.begin(), ranks_.end(),
                                      [&](const Rank& r) {
                                        return !ended_well(r) && r.ended_before_term && !only_lost_a_peer(r);
                                      });
      if (cause != ranks_.end()) named = &*cause;
    }
    const Rank& rank = *named;
    const int code = exit_code(rank.status);
    std::string how = WIFSIGNALED(rank.status) ? str_cat("killed by signal ", WTERMSIG(rank.status), "; ") : "";
    std::string message =
        rank.last_error_line.empty() ? "it wrote nothing to stderr" : "its last message: " + rank.last_error_line;
    err_ << "recmod: rank " << rank.index << " exited with code " << code << " (" << how << message << ")\n";
    err_.flush();
    return code;
  }

 private:
  static int exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
  }

  ExecArgs exec_args(int k, int port) const {
    ExecArgs args;
    args.strings_argv.push_back(options_.executable);
    for (const auto& a : options_.args) args.strings_argv.push_back(a);
    std::vector<std::pair<std::string, std::string>> ours = {
        {"RANK", std::to_string(k)},       {"WORLD_SIZE", std::to_string(options_.nproc)},
        {"LOCAL_RANK", std::to_string(k)}, {"LOCAL_WORLD_SIZE", std::to_string(options_.nproc)},
        {"MASTER_ADDR", "127.0.0.1"},      {"MASTER_PORT", std::to_string(port)},
        {kLocalLaunchVariable, "1"},
    };
    if (options_.threads_per_rank > 0) ours.emplace_back("OMP_NUM_THREADS", std::to_string(options_.threads_per_rank));
    std::set<std::string> names;
    for (const auto& [name, value] : ours) names.insert(name);
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry(*e);
      if (names.count(entry.substr(0, entry.find('='))) == 0) args.strings_env.push_back(entry);
    }
    for (const auto& [name, value] : ours) args.strings_env.push_back(name + "=" + value);
    args.finish();
    return args;
  }

  void spawn(int k, const std::string& path, int port) {
    Rank& rank = ranks_[static_cast<size_t>(k)];
    rank.index = k;
    ExecArgs args = exec_args(k, port);
    const std::string failure = str_cat("recmod: cannot execute '", path, "': ");

    int pipes[2][2] = {{-1, -1}, {-1, -1}};
    for (int s = 0; s < 2; ++s) {
      if (pipe2(pipes[s], O_CLOEXEC) != 0) {
        for (int t = 0; t < s; ++t) close(pipes[t][0]), close(pipes[t][1]);
        throw_system_error("cannot create a pipe");
      }
    }
    rank.streams[0] = {pipes[0][0], "", &out_};
    rank.streams[1] = {pipes[1][0], "", &err_};
    for (auto& stream : rank.streams) fcntl(stream.fd, F_SETFL, fcntl(stream.fd, F_GETFL) | O_NONBLOCK);

    // Block the forwarded signals across fork: the child must not run our
    // handler before it resets it.
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigemptyset(&dfl.sa_mask);
      sigaction(SIGINT, &dfl, nullptr);
      sigaction(SIGTERM, &dfl, nullptr);
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);  // the supervisor is already gone
      redirect(dev_null_, STDIN_FILENO);
      redirect(pipes[0][1], STDOUT_FILENO);
      redirect(pipes[1][1], STDERR_FILENO);
      pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
      execve(path.c_str(), args.argv.data(), args.envp.data());
      const int error = errno;
      write_all(STDERR_FILENO, failure.data(), failure.size());
      const char* text = errno_text(error);
      write_all(STDERR_FILENO, text, std::strlen(text));
      write_all(STDERR_FILENO, "\n", 1);
      _exit(127);
    }
    const int fork_errno = errno;
    if (pid > 0) setpgid(pid, pid);  // also here, so that kill(-pid) works at once
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    close(pipes[0][1]);
    close(pipes[1][1]);
    if (pid < 0) {
      errno = fork_errno;
      throw_system_error(str_cat("cannot start rank ", k));
    }
    rank.pid = pid;
  }

  void signal_all(int signal) {
    for (auto& rank : ranks_) {
      if (rank.pid <= 0 || rank.reaped) continue;
      if (kill(-rank.pid, signal) != 0) kill(rank.pid, signal);
    }
  }

  bool any_running() const {
    for (const auto& rank : ranks_)
      if (!rank.reaped) return true;
    return false;
  }

  void loop(int wake) {
    std::optional<Clock::time_point> term_at, kill_at;
    bool term_sent = false, kill_sent = false;
    std::vector<pollfd> fds;
    std::vector<Stream*> streams;
    while (any_running()) {
      fds.clear();
      streams.clear();
      fds.push_back({wake, POLLIN, 0});
      streams.push_back(nullptr);
      for (auto& rank : ranks_)
        for (auto& stream : rank.streams)
          if (stream.fd >= 0) {
            fds.push_back({stream.fd, POLLIN, 0});
            streams.push_back(&stream);
          }
      auto timeout = kPollInterval;
      auto now = Clock::now();
      auto until = [&](const std::optional<Clock::time_point>& at) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*at - now);
        timeout = std::clamp(left, std::chrono::milliseconds(0), timeout);
      };
      if (term_at && !term_sent) until(term_at);
      if (kill_at && !kill_sent) until(kill_at);
      int ready = poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
      if (ready < 0 && errno != EINTR) throw_system_error("poll failed");

      // Stop requests (a signal or request_local_ranks_stop): forward them.
      drain(wake);
      const unsigned requests = g_stop_requests.load();
      if (requests != forwarded_) {
        forwarded_ = requests;
        forwarded_signals_.insert(g_stop_signal.load());
        signal_all(g_stop_signal.load());
      }

      for (size_t i = 1; ready > 0 && i < fds.size(); ++i)
        if (fds[i].revents != 0) read_stream(*streams[i]);

      reap();
      now = Clock::now();
      if (failing_ && !term_at) term_at = now + options_.grace;
      if (term_at && !term_sent && now >= *term_at) {
        signal_all(SIGTERM);
        term_sent = terminating_ = true;
        kill_at = now + options_.kill_after;
      }
      if (kill_at && !kill_sent && now >= *kill_at) {
        signal_all(SIGKILL);
        kill_sent = true;
      }
    }
  }

  void reap() {
    for (auto& rank : ranks_) {
      if (rank.reaped) continue;
      int status = 0;
      pid_t got = waitpid(rank.pid, &status, WNOHANG);
      if (got == 0 || (got < 0 && errno == EINTR)) continue;
      rank.reaped = true;
      rank.ended_before_term = !terminating_;
      // ECHILD: someone else reaped it (a SIGCHLD handler waiting for any
      // child); count it as a failure with code 1.
      rank.status = got > 0 ? status : (1 << 8);
      if (!failing_ && !(WIFEXITED(rank.status) && WEXITSTATUS(rank.status) == 0)) failing_ = rank.index;
    }
  }

  Rank& rank_of(const Stream& stream) {
    for (auto& rank : ranks_)
      if (&rank.streams[0] == &stream || &rank.streams[1] == &stream) return rank;
    throw Error("recmod --nproc: internal error: a stream without a rank");
  }

  /// Reads what is there (until EAGAIN or EOF); EOF closes the stream.
  void read_stream(Stream& stream) {
    Rank& rank = rank_of(stream);
    char buffer[65536];
    while (stream.fd >= 0) {
      ssize_t n = read(stream.fd, buffer, sizeof buffer);
      if (n > 0) {
        stream.partial.append(buffer, static_cast<size_t>(n));
        emit_lines(rank, stream);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_stream(stream);  // EOF or an error
    }
    stream.sink->flush();
  }

  void emit_lines(Rank& rank, Stream& stream) {
    size_t start = 0;
    while (true) {
      size_t newline = stream.partial.find('\n', start);
      if (newline == std::string::npos) {
        if (stream.partial.size() - start < kMaxLine) break;
        newline = start + kMaxLine;  // a very long line: write it in pieces
        emit(rank, stream, stream.partial.substr(start, newline - start));
        start = newline;
        continue;
      }
      emit(rank, stream, stream.partial.substr(start, newline - start));
      start = newline + 1;
    }
    stream.partial.erase(0, start);
  }

  void emit(Rank& rank, Stream& stream, std::string line) {
    // One write per line: an unbuffered sink (std::cerr) writes it whole.
    *stream.sink << str_cat("[rank ", rank.index, "] ", line, '\n');
    if (&stream == &rank.streams[1]) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (!line.empty()) rank.last_error_line = std::move(line);
    }
  }

  /// After every rank is reaped: what is left in the pipe and a last line
  /// without '\n'. A grandchild may still hold the pipe open, so this reads
  /// what is there and does not wait for EOF.
  void finish_stream(Rank& rank, Stream& stream) {
    if (stream.fd >= 0) read_stream(stream);
    close_stream(stream);
    if (!stream.partial.empty()) {
      emit(rank, stream, stream.partial);
      stream.partial.clear();
      stream.sink->flush();
    }
  }

  static void close_stream(Stream& stream) {
    if (stream.fd >= 0) close(stream.fd);
    stream.fd = -1;
  }

  const LocalLaunchOptions& options_;
  std::ostream& out_;
  std::ostream& err_;
  std::vector<Rank> ranks_;
  unsigned forwarded_ = 0;
  std::set<int> forwarded_signals_;  // the SIGINT/SIGTERM passed on to the ranks
  int dev_null_ = -1;
  std::optional<int> failing_;
  bool terminating_ = false;  // SIGTERM sent to the ranks after a failure
};

}  // namespace

void request_local_ranks_stop(int signal) {
  if (signal <= 0) return;
  const int saved_errno = errno;
  g_stop_signal.store(signal);
  g_stop_requests.fetch_add(1);
  const int fd = g_wake_write.load();
  if (fd >= 0) {
    ssize_t ignored = write(fd, "s", 1);  // a full pipe already wakes the supervisor
    (void)ignored;
  }
  errno = saved_errno;
}

int run_local_ranks(const LocalLaunchOptions& options, std::ostream& out, std::ostream& err) {
  if (options.nproc < 1) throw UsageError(str_cat("--nproc must be at least 1, got ", options.nproc));
  if (options.master_port < 0 || options.master_port > 65535)
    throw UsageError(
        str_cat("recmod --nproc: master port must be in [0, 65535] (0: a free one), got ", options.master_port));
  if (options.threads_per_rank < 0)
    throw UsageError(str_cat("recmod --nproc: threads per rank must be >= 0, got ", options.threads_per_rank));
  RunningFlag running;
  drain(wake_read_fd());
  const unsigned before = g_stop_requests.load();  // requests from now on are this run's
  SignalScope signals;
  Supervisor supervisor(options, out, err, before);
  return supervisor.run();
}

std::vector<std::string> args_without_nproc(const std::vector<std::string>& args) {
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      kept.insert(kept.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    kept.push_back(args[i]);
  }
  return kept;
}

bool launched_by_recmod(const EnvLookup& env) {
  auto value = env(kLocalLaunchVariable);
  return value && !value->empty() && *value != "0";
}

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_system_error("cannot create a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    throw_system_error("cannot bind a socket on 127.0.0.1 to find a free port");
  }
  close(fd);
  return ntohs(address.sin_port);
}

std::string current_executable() {
  std::string path(4096, '\0');
  ssize_t n = readlink("/proc/self/exe", path.data(), path.size());
  if (n <= 0 || static_cast<size_t>(n) >= path.size()) throw_system_error("cannot read /proc/self/exe");
  path.resize(static_cast<size_t>(n));
  return path;
}

}  // namespace recmod::dist
