#include "commands/runtime.h"

#include <dlfcn.h>
#include <sched.h>
#include <strings.h>
#include <sys/mman.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::app {

// ------------------------------------------------------ OpenMP wait policy
//
// What libgomp does (Debian bookworm: GCC 12.2's libgomp.so.1, glibc 2.36):
// - It reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in initialize_env(), a
//   constructor of libgomp.so.1 (libgomp/env.c) that the dynamic loader runs
//   before main. A setenv() in main is too late: checked with
//   OMP_DISPLAY_ENV, which the same function reads, set in main -> no display.
// - A function in the executable's .preinit_array runs before every shared
//   library's constructor (glibc's _dl_init), but a setenv() there is lost as
//   well: libc.so.6's own initialiser, which runs after it, resets environ to
//   the block the kernel passed (checked: getenv in main sees nothing).
// - Unset, each idle thread spins GOMP_SPINCOUNT = 300,000 times (a few ms)
//   at every barrier before it sleeps; OMP_WAIT_POLICY=PASSIVE makes it 0.
//   torch runs many short parallel regions per step, so on cores shared with
//   other work the spinning threads take the CPU from the one thread the rest
//   wait for (issue 13: 35.2 s vs 4.0 s for one run on a busy 2-core machine).
// So the preinit function below re-executes the process once, through
// /proc/self/exe with the same argv and the environment plus
// OMP_WAIT_POLICY=PASSIVE and a guard variable. It runs before libtorch's
// static initialisers, so the first start costs only the dynamic loading
// (0.2-0.3 s on a busy 2-core machine, where all of `recmod --version` takes
// ~0.6 s),
// and is skipped for the commands that compute nothing in parallel
// (is_light_command). If the exec fails (no /proc), recmod runs on with
// libgomp's defaults. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT, or the
// guard, means no wait policy is added.
//
// The same re-exec sets glibc's malloc thresholds (GLIBC_TUNABLES, also read
// only at start, by ld.so), unless the user set GLIBC_TUNABLES or one of the
// MALLOC_*_THRESHOLD_ variables. A training step allocates and frees the
// same activation and gradient buffers (megabytes each at batch 2048) every
// step. By default glibc serves them with mmap once the dynamic threshold
// no longer covers them, and gives the heap's free top back to the kernel
// (trim) past twice that threshold, so the next step faults every page in
// again; on a VM whose freed pages go back to the host (free page reporting)
// a fault is expensive: dlrm_bench's Kaggle step at batch 2048, 1 thread,
// took 133-149 ms against 81.5-102 ms with both thresholds at 256 MiB
// (BENCHMARKS.md, "Allocation: keeping the step's memory"). 256 MiB bounds
// what a process keeps beyond its peak; larger one-off blocks (tables, a
// gathered checkpoint) are still mapped and unmapped on their own.
namespace {

constexpr char kPassiveWait[] = "OMP_WAIT_POLICY=PASSIVE";
constexpr char kMallocTunables[] =
    "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456";
constexpr char kReexecGuard[] = "RECMOD_REEXECUTED=1";

bool has_variable(char** envp, const char* name_with_equals) {
  const size_t n = std::strlen(name_with_equals);
  for (char** e = envp; *e; ++e)
    if (std::strncmp(*e, name_with_equals, n) == 0) return true;
  return false;
}

/// Commands that run no parallel torch work, where a second start (0.2-0.3 s
/// on a busy 2-core machine: libtorch's relocations) would buy nothing; also
/// no command at all, --help and --version. Any other command re-executes.
bool is_light_command(int argc, char** argv) {
  if (argc < 2 || !argv[1] || argv[1][0] == '-') return true;
  for (const char* light : {"validate", "compare", "plan", "generate", "convert"})
    if (std::strcmp(argv[1], light) == 0) return true;
  return false;
}

// Runs before libc is initialised: no malloc, no stdio, no exceptions.
void reexec_with_fast_defaults(int argc, char** argv, char** envp) {
  if (!argv || !argv[0] || !envp) return;
  if (has_variable(envp, "RECMOD_REEXECUTED=") || is_light_command(argc, argv)) return;
  const bool add_wait = !has_variable(envp, "OMP_WAIT_POLICY=") && !has_variable(envp, "GOMP_SPINCOUNT=");
  const bool add_malloc = !has_variable(envp, "GLIBC_TUNABLES=") && !has_variable(envp, "MALLOC_MMAP_THRESHOLD_=") &&
                          !has_variable(envp, "MALLOC_TRIM_THRESHOLD_=");
  if (!add_wait && !add_malloc) return;
  size_t count = 0;
  while (envp[count]) ++count;
  const size_t bytes = (count + 4) * sizeof(char*);
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return;
  auto** env = static_cast<char**>(memory);
  std::copy(envp, envp + count, env);
  if (add_wait) env[count++] = const_cast<char*>(kPassiveWait);
  if (add_malloc) env[count++] = const_cast<char*>(kMallocTunables);
  env[count++] = const_cast<char*>(kReexecGuard);
  env[count] = nullptr;
  ::execve("/proc/self/exe", argv, env);
  ::munmap(memory, bytes);  // the exec failed: go on as this process
}

__attribute__((section(".preinit_array"), used)) void (*preinit_reexec)(int, char**,
                                                                        char**) = &reexec_with_fast_defaults;

// --------------------------------------------------------- default threads

/// CPUs a cgroup directory's quota allows (0: no quota there).
double quota_in(const std::string& dir, bool v2) {
  if (v2) {
    std::ifstream in(dir + "/cpu.max");  // "max 100000" or "150000 100000"
    std::string quota;
    double period = 0;
    if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
    return std::atof(quota.c_str()) / period;
  }
  std::ifstream q(dir + "/cpu.cfs_quota_us"), p(dir + "/cpu.cfs_period_us");
  double quota = -1, period = 0;
  if (!(q >> quota) || !(p >> period) || quota <= 0 || period <= 0) return 0;
  return quota / period;
}

/// The smallest CPU quota on the path from this process's cgroup to the
/// root of the mounted hierarchy (0: none). Without a cgroup namespace the
/// path /proc/self/cgroup names may not exist under the mount; its parents
/// (the container's root) are tried.
double cgroup_cpu_quota() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  double best = 0;
  while (std::getline(in, line)) {
    // "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    std::vector<std::string> roots;
    bool v2 = false;
    if (line.compare(0, first, "0") == 0 && controllers.empty()) {
      v2 = true;
      roots = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    } else {
      std::stringstream names(controllers);
      std::string name;
      bool cpu = false;
      while (std::getline(names, name, ',')) cpu = cpu || name == "cpu";
      if (!cpu) continue;
      roots = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu"};
    }
    for (const auto& root : roots) {
      std::string p = path;
      while (true) {
        const double cpus = quota_in(root + (p == "/" ? "" : p), v2);
        if (cpus > 0 && (best == 0 || cpus < best)) best = cpus;
        if (p.empty() || p == "/") break;
        const auto slash = p.rfind('/');
        p = slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
      }
    }
  }
  return best;
}

}  // namespace

int default_threads() {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  if (const double quota = cgroup_cpu_quota(); quota > 0) cpus = std::min(cpus, static_cast<int>(std::ceil(quota)));
  return std::max(1, cpus);
}

void set_threads(int threads) {
  if (threads < 0) throw UsageError(str_cat("--threads must be >= 0, got ", threads));
  if (threads == 0) threads = default_threads();
  at::set_num_threads(threads);
  // libtorch calls the system BLAS, which keeps its own thread pool; looked up
  // at run time so that a non-OpenBLAS BLAS still works.
  using SetThreads = void (*)(int);
  if (auto* set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(threads);
}

// OpenBLAS (0.3.21, Debian bookworm) reads OPENBLAS_THREAD_TIMEOUT in
// openblas_read_env() and applies it in blas_thread_init() when it starts its
// workers (2^value cycles, clamped to 2^4..2^30; default 2^28). Its workers
// spin that long after each GEMM. In a training step at batch 2048 on 2
// cores they spin through the sparse and elementwise work that torch's
// OpenMP threads run between the GEMMs, on the same cores: with a 2^20 spin
// the Kaggle DLRM step (recmod profile, 2 threads) took 52.8-59.5 ms against
// 61.1-64.0 ms, every interleaved pair faster. At batch 128, where the gaps
// between GEMMs are short, the workers then sleep and wake more often, and
// 2^20 was slower in 8 of 9 pairs (6.07-7.63 ms against 5.32-7.33), hence
// the threshold on the batch.
namespace {
/// log2 of the cycles OpenBLAS's workers spin, as blas_thread_init computes it.
int blas_spin_log2(int (*env_timeout)()) {
  const int value = env_timeout();  // 0: unset
  return value > 0 ? std::clamp(value, 4, 30) : 28;
}
}  // namespace

std::string tune_blas_spin(int64_t rows_per_step) {
  using Call = int (*)();
  using ReadEnv = void (*)();
  auto* env_timeout = reinterpret_cast<Call>(dlsym(RTLD_DEFAULT, "openblas_thread_timeout"));
  auto* read_env = reinterpret_cast<ReadEnv>(dlsym(RTLD_DEFAULT, "openblas_read_env"));
  auto* shutdown = reinterpret_cast<Call>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"));
  auto* init = reinterpret_cast<Call>(dlsym(RTLD_DEFAULT, "blas_thread_init"));
  if (!env_timeout || !read_env || !shutdown || !init) return "";  // not OpenBLAS, or not its pthreads build
  auto described = [&](const std::string& why) {
    return str_cat("OpenBLAS's workers spin 2^", blas_spin_log2(env_timeout), " cycles after a GEMM (", why, ")");
  };
  if (const char* user = std::getenv("OPENBLAS_THREAD_TIMEOUT"))
    return described(str_cat("OPENBLAS_THREAD_TIMEOUT=", user));
  const int threads = at::get_num_threads();
  const std::string batch =
      str_cat(rows_per_step, " rows per rank on ", threads, threads == 1 ? " thread" : " threads");
  if (rows_per_step < kShortBlasSpinRows || threads < 2) return described("OpenBLAS's default; " + batch);
  ::setenv("OPENBLAS_THREAD_TIMEOUT", "20", /*overwrite=*/1);
  read_env();
  shutdown();
  init();
  return described("short: " + batch);
}

std::string fit_threads_to_step(int64_t rows_per_step) {
  const int threads = at::get_num_threads();
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const bool passive =
      policy != nullptr && strcasecmp(policy, "passive") == 0 && std::getenv("GOMP_SPINCOUNT") == nullptr;
  const int64_t fitting = std::clamp<int64_t>(rows_per_step / kMinRowsPerThread, 1, threads);
  if (!passive || fitting >= threads) return "";
  set_threads(static_cast<int>(fitting));
  return str_cat("steps of ", rows_per_step, " rows run on ", fitting, fitting == 1 ? " thread" : " threads", " of ",
                 threads, " (fewer than ", kMinRowsPerThread,
                 " rows a thread: waking sleeping threads under OMP_WAIT_POLICY=PASSIVE costs more than they save)");
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw UsageError(
          str_cat("--device ", name, ": CUDA is not available in this build or on this machine; use --device cpu"));
    int index = 0;
    if (name.size() > 5) {
      try {
        index = std::stoi(name.substr(5));
      } catch (const std::exception&) {
        throw UsageError(str_cat("--device ", name, ": expected cuda:N with N a number"));
      }
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      throw UsageError(
          str_cat("--device ", name, ": this machine has ", torch::cuda::device_count(), " CUDA device(s)"));
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw UsageError(str_cat("--device must be cpu, cuda or cuda:N, got '", name, "'"));
}

}  // namespace recmod::app
