#include "recmod/profile/gpu_activity.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>

#include "recmod/common/errors.h"

namespace recmod::profile {

namespace {

// libkineto::ActivityType's values (libkineto/include/ActivityType.h), the
// same in the Kineto of libtorch 1.13 and of today's PyTorch; KinetoEvent::
// activityType() returns them as uint8_t (libkineto's header is not shipped).
constexpr uint8_t kKinetoGpuMemcpy = 3;
constexpr uint8_t kKinetoGpuMemset = 4;
constexpr uint8_t kKinetoKernel = 5;

// KinetoEvent's times: startUs()/durationUs() up to PyTorch 2.0,
// startNs()/durationNs() since; whichever this libtorch has.
template <typename E, typename = void>
struct HasNsTimes : std::false_type {};
template <typename E>
struct HasNsTimes<E, std::void_t<decltype(std::declval<const E&>().startNs()),
                                 decltype(std::declval<const E&>().durationNs())>> : std::true_type {};

template <typename E>
Interval span_of(const E& event) {
  if constexpr (HasNsTimes<E>::value) {
    const auto start = static_cast<int64_t>(event.startNs());
    return {start, start + static_cast<int64_t>(event.durationNs())};
  } else {
    const auto start = static_cast<int64_t>(event.startUs()) * 1000;
    return {start, start + static_cast<int64_t>(event.durationUs()) * 1000};
  }
}

GpuActivity unavailable(std::string reason, int64_t steps = 0) {
  GpuActivity out;
  out.unavailable_reason = std::move(reason);
  out.steps = steps;
  return out;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int64_t union_length_ns(std::vector<Interval> intervals) {
  intervals.erase(std::remove_if(intervals.begin(), intervals.end(),
                                 [](const Interval& i) { return i.end_ns <= i.start_ns; }),
                  intervals.end());
  std::sort(intervals.begin(), intervals.end(),
            [](const Interval& a, const Interval& b) { return a.start_ns < b.start_ns; });
  int64_t total = 0;
  size_t i = 0;
  while (i < intervals.size()) {
    int64_t start = intervals[i].start_ns, end = intervals[i].end_ns;
    for (++i; i < intervals.size() && intervals[i].start_ns <= end; ++i) end = std::max(end, intervals[i].end_ns);
    total += end - start;
  }
  return total;
}

std::string short_kernel_name(const std::string& name) {
  std::string out = name.rfind("void ", 0) == 0 ? name.substr(5) : name;
  // The parameter list: the first '(' outside template arguments.
  int depth = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '<') ++depth;
    else if (out[i] == '>') --depth;
    else if (out[i] == '(' && depth <= 0) {
      out.resize(i);
      break;
    }
  }
  constexpr size_t kMost = 120;
  if (out.size() > kMost) out = out.substr(0, kMost) + "...";
  return out;
}

std::vector<KernelCount> most_run_kernels(const std::vector<std::string>& names, int64_t steps, size_t most) {
  if (steps <= 0) return {};
  std::map<std::string, int64_t> counts;
  for (const auto& name : names) ++counts[short_kernel_name(name)];
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (sorted.size() > most) sorted.resize(most);
  std::vector<KernelCount> out;
  for (const auto& [name, count] : sorted)
    out.push_back({name, static_cast<double>(count) / static_cast<double>(steps)});
  return out;
}

GpuActivity summarise_gpu_activity(const std::vector<GpuEvent>& events, int64_t steps, double wall_ms) {
  if (steps <= 0) return unavailable("no steps were measured");
  if (events.empty())
    return unavailable("the profiler recorded no CUDA activity (this libtorch has no Kineto/CUPTI)", steps);
  std::vector<Interval> busy, copies;
  int64_t kernels = 0, memcpys = 0, memsets = 0;
  for (const auto& e : events) {
    switch (e.kind) {
      case GpuEventKind::Kernel: ++kernels; busy.push_back({e.start_ns, e.end_ns}); break;
      case GpuEventKind::Memset: ++memsets; busy.push_back({e.start_ns, e.end_ns}); break;
      case GpuEventKind::Memcpy: ++memcpys; copies.push_back({e.start_ns, e.end_ns}); break;
    }
  }
  const auto n = static_cast<double>(steps);
  GpuActivity out;
  out.available = true;
  out.steps = steps;
  out.kernels_per_step = static_cast<double>(kernels) / n;
  out.memcpys_per_step = static_cast<double>(memcpys) / n;
  out.memsets_per_step = static_cast<double>(memsets) / n;
  out.wall_ms_per_step = std::max(0.0, wall_ms) / n;
  out.busy_ms_per_step = static_cast<double>(union_length_ns(std::move(busy))) / 1e6 / n;
  out.memcpy_ms_per_step = static_cast<double>(union_length_ns(std::move(copies))) / 1e6 / n;
  // The profiler's clock and the host's are not the same: busy can come out
  // a little over the wall time; idle is never negative.
  out.idle_ms_per_step = std::max(0.0, out.wall_ms_per_step - out.busy_ms_per_step);
  out.idle_percent = out.wall_ms_per_step > 0 ? std::min(100.0, 100.0 * out.idle_ms_per_step / out.wall_ms_per_step) : 0;
  return out;
}

GpuActivity measure_gpu_activity(int64_t steps, const TimedStep& step) {
  namespace autograd_profiler = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  if (steps <= 0) return unavailable("no steps were measured");
  // CUDA activity only: recording every CPU op would slow the host that
  // launches the kernels, and so inflate the idle time measured.
  const ProfilerConfig config(ProfilerState::KINETO);
  const std::set<ActivityType> activities{ActivityType::CUDA};
  try {
    autograd_profiler::prepareProfiler(config, activities);
    autograd_profiler::enableProfiler(config, activities);
  } catch (const std::exception& e) {
    return unavailable(str_cat("the profiler did not start: ", first_line(e.what())));
  }
  double wall_ms = 0;
  int64_t ran = 0;
  try {
    for (; ran < steps; ++ran) {
      const std::optional<double> ms = step();
      if (!ms) break;
      wall_ms += *ms;
    }
  } catch (...) {
    try {
      autograd_profiler::disableProfiler();
    } catch (const std::exception&) {  // the step's error is the one to report
    }
    throw;
  }
  std::unique_ptr<autograd_profiler::ProfilerResult> result;
  try {
    result = autograd_profiler::disableProfiler();
  } catch (const std::exception& e) {
    return unavailable(str_cat("the profiler did not stop cleanly: ", first_line(e.what())), ran);
  }
  if (ran == 0) return unavailable("no batch was left for the measured steps (use fewer --steps)");
  if (!result) return unavailable("the profiler returned no result", ran);
  std::vector<GpuEvent> events;
  std::vector<std::string> kernel_names;
  for (const auto& event : result->events()) {
    const uint8_t type = event.activityType();
    GpuEventKind kind;
    if (type == kKinetoKernel) kind = GpuEventKind::Kernel;
    else if (type == kKinetoGpuMemcpy) kind = GpuEventKind::Memcpy;
    else if (type == kKinetoGpuMemset) kind = GpuEventKind::Memset;
    else continue;  // CPU ops, CUDA runtime calls, annotations, ...
    const Interval span = span_of(event);
    events.push_back({kind, span.start_ns, span.end_ns});
    if (kind == GpuEventKind::Kernel) kernel_names.emplace_back(event.name());  // emplace: any string-like return type
  }
  GpuActivity activity = summarise_gpu_activity(events, ran, wall_ms);
  if (activity.available) activity.top_kernels = most_run_kernels(kernel_names, ran, 8);
  return activity;
}

namespace {
nlohmann::json top_kernels_json(const std::vector<KernelCount>& kernels) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& k : kernels) out.push_back({{"name", k.name}, {"per_step", k.per_step}});
  return out;
}
}  // namespace

nlohmann::json GpuActivity::to_json() const {
  if (!available) return {{"available", false}, {"reason", unavailable_reason}};
  return {{"available", true},
          {"steps", steps},
          {"measured", "extra steps after the timed ones, without per-node timing, with the profiler recording"},
          {"kernels_per_step", kernels_per_step},
          {"memcpys_per_step", memcpys_per_step},
          {"memsets_per_step", memsets_per_step},
          {"wall_ms_per_step", wall_ms_per_step},
          {"busy_ms_per_step", busy_ms_per_step},
          {"memcpy_ms_per_step", memcpy_ms_per_step},
          {"idle_ms_per_step", idle_ms_per_step},
          {"idle_percent", idle_percent},
          {"top_kernels", top_kernels_json(top_kernels)}};
}

std::string GpuActivity::to_line() const {
  std::ostringstream os;
  if (!available) {
    os << "cuda: kernel launches and GPU idle time unavailable: " << unavailable_reason << "\n";
    return os.str();
  }
  os << std::fixed << std::setprecision(1) << "cuda: " << kernels_per_step << " kernel launches/step, GPU busy "
     << std::setprecision(3) << busy_ms_per_step << " ms/step, idle " << idle_ms_per_step << " ms/step ("
     << std::setprecision(1) << idle_percent << " %) of " << std::setprecision(3) << wall_ms_per_step
     << " ms/step; " << std::setprecision(1) << memcpys_per_step << " memcpy (" << std::setprecision(3)
     << memcpy_ms_per_step << " ms) and " << std::setprecision(1) << memsets_per_step << " memset/step; over "
     << steps << " extra steps after the timed ones (batch copy included, no per-node timing, profiler on)\n";
  if (!top_kernels.empty()) {
    os << "cuda kernels/step:";
    for (size_t i = 0; i < top_kernels.size(); ++i)
      os << (i ? ";" : "") << " " << std::setprecision(1) << top_kernels[i].per_step << " " << top_kernels[i].name;
    os << "\n";
  }
  return os.str();
}

}  // namespace recmod::profile
