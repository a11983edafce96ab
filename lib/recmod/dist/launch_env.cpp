#include "recmod/dist/launch_env.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::dist {
namespace {

constexpr int kDefaultPort = 29500;
constexpr const char* kLocalHost = "127.0.0.1";

[[noreturn]] void fail(const std::string& variable, const std::string& found, const std::string& expected) {
  throw UsageError(str_cat(variable, " ", found, ", expected ", expected));
}

std::string is_value(const std::string& value) {
  return "is '" + value + "'";
}

std::optional<int64_t> parse_int(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

/// Reads the environment of one launcher: integers with the variable named
/// in every complaint.
class Reader {
 public:
  explicit Reader(const EnvLookup& env) : env_(env) {}

  std::optional<std::string> get(const std::string& name) const { return env_(name); }
  bool has(const std::string& name) const { return get(name).has_value(); }

  /// An integer >= min; nullopt when unset.
  std::optional<int64_t> integer(const std::string& name, int64_t min, const std::string& expected) const {
    auto value = get(name);
    if (!value) return std::nullopt;
    auto parsed = parse_int(*value);
    if (!parsed || *parsed < min) fail(name, is_value(*value), expected);
    return parsed;
  }

  /// An integer in [0, bound); `bound_text` explains the bound ("WORLD_SIZE is 4").
  int64_t index(const std::string& name, int64_t bound, const std::string& bound_text) const {
    auto value = get(name);
    if (!value) fail(name, "is not set", str_cat("an integer in [0, ", bound, ") (", bound_text, ")"));
    auto parsed = parse_int(*value);
    if (!parsed || *parsed < 0 || *parsed >= bound)
      fail(name, is_value(*value), str_cat("an integer in [0, ", bound, ") (", bound_text, ")"));
    return *parsed;
  }

  int64_t count(const std::string& name) const {
    auto value = get(name);
    if (!value) fail(name, "is not set", "a positive integer");
    return *integer(name, 1, "a positive integer");
  }

  std::optional<int> port(const std::string& name) const {
    auto value = get(name);
    if (!value) return std::nullopt;
    auto parsed = parse_int(*value);
    if (!parsed || *parsed < 1 || *parsed > 65535) fail(name, is_value(*value), "a TCP port in [1, 65535]");
    return static_cast<int>(*parsed);
  }

  std::optional<std::string> address(const std::string& name) const {
    auto value = get(name);
    if (!value) return std::nullopt;
    bool blank = true;
    for (char c : *value) blank = blank && std::isspace(static_cast<unsigned char>(c));
    if (blank) fail(name, is_value(*value), "a host name or IP address");
    return value;
  }

  /// The first of `names` that is set, or nullopt.
  std::optional<std::string> first_set(const std::vector<std::string>& names) const {
    for (const auto& name : names)
      if (has(name)) return name;
    return std::nullopt;
  }

 private:
  const EnvLookup& env_;
};

/// A group of variables that a launcher sets together: all or none.
void require_all(const Reader& reader, const std::vector<std::string>& names, const std::string& launcher) {
  auto present = reader.first_set(names);
  if (!present) return;
  for (const auto& name : names) {
    if (reader.has(name)) continue;
    fail(name, "is not set",
         str_cat("it with ", *present, " ('", *reader.get(*present), "'): ", launcher, " sets ", join_names(names),
                 " together"));
  }
}

/// Checks local_world_size against world_size.
void check_local(const LaunchEnv& launch, const std::string& world_name, const std::string& local_size_name) {
  if (launch.local_world_size > launch.world_size)
    fail(local_size_name, str_cat("is '", launch.local_world_size, "'"),
         str_cat("at most ", world_name, " (", launch.world_size, ")"));
}

LaunchEnv read_torchrun(const Reader& reader) {
  const std::vector<std::string> names = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"};
  require_all(reader, names, "torchrun");
  LaunchEnv launch;
  launch.source = "torchrun";
  launch.world_size = reader.count("WORLD_SIZE");
  launch.rank = reader.index("RANK", launch.world_size, str_cat("WORLD_SIZE is ", launch.world_size));
  launch.local_world_size = reader.count("LOCAL_WORLD_SIZE");
  check_local(launch, "WORLD_SIZE", "LOCAL_WORLD_SIZE");
  launch.local_rank =
      reader.index("LOCAL_RANK", launch.local_world_size, str_cat("LOCAL_WORLD_SIZE is ", launch.local_world_size));
  return launch;
}

/// "2(x3),1" -> {2, 2, 2, 1}; nullopt when malformed.
std::optional<std::vector<int64_t>> parse_tasks_per_node(const std::string& text) {
  std::vector<int64_t> counts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string_view item(text.data() + start, comma - start);
    int64_t repeat = 1;
    size_t paren = item.find('(');
    if (paren != std::string_view::npos) {
      if (item.size() < paren + 4 || item[paren + 1] != 'x' || item.back() != ')') return std::nullopt;
      auto r = parse_int(item.substr(paren + 2, item.size() - paren - 3));
      if (!r || *r < 1 || *r > 1000000) return std::nullopt;
      repeat = *r;
      item = item.substr(0, paren);
    }
    auto count = parse_int(item);
    if (!count || *count < 1) return std::nullopt;
    counts.insert(counts.end(), static_cast<size_t>(repeat), *count);
    start = comma + 1;
  }
  return counts;
}

/// This node's task count and the variable it came from.
std::pair<int64_t, std::string> slurm_local_world_size(const Reader& reader, const LaunchEnv& launch) {
  if (auto value = reader.get("SLURM_STEP_TASKS_PER_NODE")) {
    auto counts = parse_tasks_per_node(*value);
    if (!counts)
      fail("SLURM_STEP_TASKS_PER_NODE", is_value(*value),
           "Slurm's tasks-per-node syntax, e.g. '2(x3),1' (comma-separated counts, N(xM) for M nodes of N)");
    bool uniform = true;
    for (int64_t c : *counts) uniform = uniform && c == counts->front();
    if (uniform) return {counts->front(), "SLURM_STEP_TASKS_PER_NODE"};
    auto nodes = static_cast<int64_t>(counts->size());
    int64_t node = reader.index("SLURM_NODEID", nodes,
                                str_cat("SLURM_STEP_TASKS_PER_NODE '", *value, "' lists ", nodes, " nodes"));
    return {(*counts)[static_cast<size_t>(node)], "SLURM_STEP_TASKS_PER_NODE"};
  }
  if (reader.has("SLURM_NTASKS_PER_NODE")) return {reader.count("SLURM_NTASKS_PER_NODE"), "SLURM_NTASKS_PER_NODE"};
  auto nodes_name = reader.first_set({"SLURM_STEP_NUM_NODES", "SLURM_NNODES"});
  if ((nodes_name && reader.count(*nodes_name) == 1) || launch.world_size == 1) return {launch.world_size, "none"};
  fail("SLURM_STEP_TASKS_PER_NODE", "is not set",
       str_cat("it (or SLURM_NTASKS_PER_NODE) for a step of ", launch.world_size, " tasks on more than one node (",
               nodes_name ? *nodes_name + " is " + *reader.get(*nodes_name)
                          : std::string("SLURM_STEP_NUM_NODES is not set"),
               ")"));
}

LaunchEnv read_slurm(const Reader& reader) {
  LaunchEnv launch;
  launch.source = "slurm";
  const std::string world_name = reader.has("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
  if (!reader.has(world_name))
    fail(world_name, "is not set", str_cat("the task count with SLURM_PROCID ('", *reader.get("SLURM_PROCID"), "')"));
  launch.world_size = reader.count(world_name);
  launch.rank = reader.index("SLURM_PROCID", launch.world_size, str_cat(world_name, " is ", launch.world_size));
  if (launch.world_size == 1 && !reader.has("SLURM_LOCALID")) {
    launch.local_rank = 0;
    launch.local_world_size = 1;
  } else {
    auto [local_size, local_name] = slurm_local_world_size(reader, launch);
    launch.local_world_size = local_size;
    check_local(launch, world_name, local_name);
    launch.local_rank =
        reader.index("SLURM_LOCALID", launch.local_world_size, str_cat(launch.local_world_size, " tasks on this node"));
  }

  if (auto addr = reader.address("MASTER_ADDR")) {
    launch.master_addr = *addr;
  } else if (auto list_name = reader.first_set({"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"})) {
    auto list = *reader.get(*list_name);
    auto host = first_slurm_host(list);
    if (!host)
      fail(*list_name, is_value(list),
           "a Slurm host list such as 'node[01-04,07],gpu3' (the master is its first host)");
    launch.master_addr = *host;
  } else if (launch.local_world_size != launch.world_size) {
    fail("MASTER_ADDR", "is not set",
         str_cat("a host name or IP address (or SLURM_STEP_NODELIST) for ", launch.world_size,
                 " tasks on several nodes"));
  }

  if (auto port = reader.port("MASTER_PORT")) {
    launch.master_port = *port;
  } else if (auto job = reader.integer("SLURM_JOB_ID", 0, "a non-negative integer (the job id)")) {
    launch.master_port = slurm_job_port(*job);
  }
  return launch;
}

LaunchEnv read_openmpi(const Reader& reader) {
  const std::vector<std::string> names = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                          "OMPI_COMM_WORLD_LOCAL_SIZE"};
  require_all(reader, names, "Open MPI's mpirun");
  LaunchEnv launch;
  launch.source = "openmpi";
  launch.world_size = reader.count("OMPI_COMM_WORLD_SIZE");
  launch.rank =
      reader.index("OMPI_COMM_WORLD_RANK", launch.world_size, str_cat("OMPI_COMM_WORLD_SIZE is ", launch.world_size));
  launch.local_world_size = reader.count("OMPI_COMM_WORLD_LOCAL_SIZE");
  check_local(launch, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE");
  launch.local_rank = reader.index("OMPI_COMM_WORLD_LOCAL_RANK", launch.local_world_size,
                                   str_cat("OMPI_COMM_WORLD_LOCAL_SIZE is ", launch.local_world_size));
  return launch;
}

/// MASTER_ADDR / MASTER_PORT for torchrun, Open MPI and one process.
void read_master(const Reader& reader, LaunchEnv& launch, const std::string& world_name) {
  if (auto addr = reader.address("MASTER_ADDR")) {
    launch.master_addr = *addr;
  } else if (launch.local_world_size != launch.world_size) {
    fail("MASTER_ADDR", "is not set",
         str_cat("the host name or IP address of rank 0 (", world_name, " is ", launch.world_size,
                 ", more than the ranks on this host)"));
  }
  if (auto port = reader.port("MASTER_PORT")) launch.master_port = *port;
}

bool in_srun_step(const Reader& reader) {
  return reader.has("SLURM_PROCID") && reader.first_set({"SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NUM_TASKS"});
}

/// Checks the bracket part of a host list item: "01-04,07".
bool valid_ranges(std::string_view ranges) {
  if (ranges.empty()) return false;
  size_t start = 0;
  while (start <= ranges.size()) {
    size_t comma = ranges.find(',', start);
    if (comma == std::string_view::npos) comma = ranges.size();
    std::string_view range = ranges.substr(start, comma - start);
    size_t dash = range.find('-');
    std::string_view lo = range.substr(0, dash);
    std::string_view hi = dash == std::string_view::npos ? lo : range.substr(dash + 1);
    auto digits = [](std::string_view s) {
      if (s.empty() || s.size() > 18) return false;
      for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
      return true;
    };
    if (!digits(lo) || !digits(hi) || *parse_int(hi) < *parse_int(lo)) return false;
    start = comma + 1;
  }
  return true;
}

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::optional<std::string> first_slurm_host(const std::string& hostlist) {
  // Validate the whole list, remembering the first item's expansion.
  std::string first;
  bool in_first = true;
  size_t i = 0;
  size_t item_length = 0;
  while (i < hostlist.size()) {
    char c = hostlist[i];
    if (c == '[') {
      size_t close = hostlist.find(']', i);
      if (close == std::string::npos) return std::nullopt;
      std::string_view ranges(hostlist.data() + i + 1, close - i - 1);
      if (ranges.find('[') != std::string_view::npos || !valid_ranges(ranges)) return std::nullopt;
      if (in_first) first += std::string(ranges.substr(0, ranges.find_first_of(",-")));
      item_length += close - i + 1;
      i = close + 1;
    } else if (c == ']') {
      return std::nullopt;
    } else if (c == ',') {
      if (item_length == 0) return std::nullopt;
      in_first = false;
      item_length = 0;
      ++i;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      return std::nullopt;
    } else {
      if (in_first) first += c;
      ++item_length;
      ++i;
    }
  }
  if (item_length == 0) return std::nullopt;  // empty list or a trailing comma
  return first;
}

int slurm_job_port(int64_t job_id) {
  return static_cast<int>(15000 + job_id % 10000);
}

LaunchEnv read_launch_env(const EnvLookup& env) {
  Reader reader(env);
  if (reader.first_set({"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"})) {
    LaunchEnv launch = read_torchrun(reader);
    read_master(reader, launch, "WORLD_SIZE");
    return launch;
  }
  if (in_srun_step(reader)) return read_slurm(reader);
  if (reader.first_set({"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                        "OMPI_COMM_WORLD_LOCAL_SIZE"})) {
    LaunchEnv launch = read_openmpi(reader);
    read_master(reader, launch, "OMPI_COMM_WORLD_SIZE");
    return launch;
  }
  LaunchEnv launch;
  read_master(reader, launch, "WORLD_SIZE");
  return launch;
}

}  // namespace recmod::dist
