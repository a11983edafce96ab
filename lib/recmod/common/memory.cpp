#include "recmod/common/memory.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace recmod {

namespace {

std::optional<uint64_t> meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) return uint64_t{kib} * 1024;
  }
  return std::nullopt;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The first whitespace-separated number of a file ("max" and the like: nullopt).
std::optional<uint64_t> read_number(const std::string& path) {
  std::ifstream in(path);
  unsigned long long value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

/// `key`'s value in a memory.stat file ("key value" lines).
std::optional<uint64_t> stat_value(const std::string& stat_path, const std::string& key) {
  std::ifstream in(stat_path);
  std::string name;
  unsigned long long value = 0;
  while (in >> name >> value)
    if (name == key) return value;
  return std::nullopt;
}

/// A limit this large is "no limit" (cgroup v1 writes 2^63 rounded down to a page).
constexpr uint64_t kUnlimited = uint64_t{1} << 60;

uint64_t left_under(uint64_t limit, uint64_t usage, uint64_t inactive_file) {
  const uint64_t used = usage > inactive_file ? usage - inactive_file : 0;
  return limit > used ? limit - used : 0;
}

/// `dir` when it holds `file`, else the root (a cgroup namespace mounts the
/// process's own cgroup there).
std::string cgroup_dir(const std::string& root, const std::string& path, const std::string& file) {
  const std::string dir = root + path;
  return std::filesystem::exists(dir + "/" + file) ? dir : root;
}

std::optional<uint64_t> v1_available(const std::string& root, const std::string& path) {
  const std::string dir = cgroup_dir(root, path, "memory.limit_in_bytes");
  auto limit = stat_value(dir + "/memory.stat", "hierarchical_memory_limit");
  if (!limit) limit = read_number(dir + "/memory.limit_in_bytes");
  const auto usage = read_number(dir + "/memory.usage_in_bytes");
  if (!limit || *limit >= kUnlimited || !usage) return std::nullopt;
  return left_under(*limit, *usage, stat_value(dir + "/memory.stat", "total_inactive_file").value_or(0));
}

std::optional<uint64_t> v2_available(const std::string& root, std::string path) {
  if (!std::filesystem::exists(root + path + "/memory.max")) path = "";
  std::optional<uint64_t> least;
  for (;;) {  // the cgroup and each parent with a limit (the root has none)
    const std::string dir = root + path;
    const auto limit = read_number(dir + "/memory.max");  // "max": none
    const auto usage = read_number(dir + "/memory.current");
    if (limit && usage) {
      const uint64_t left = left_under(*limit, *usage, stat_value(dir + "/memory.stat", "inactive_file").value_or(0));
      least = least ? std::min(*least, left) : left;
    }
    const auto slash = path.rfind('/');
    if (path.empty() || slash == std::string::npos) break;
    path.resize(slash);
  }
  return least;
}

}  // namespace

std::optional<uint64_t> cgroup_memory_available(const std::string& proc_self_cgroup, const std::string& cgroup_root) {
  std::istringstream lines(proc_self_cgroup);
  std::optional<std::string> v2_path;
  for (std::string line; std::getline(lines, line);) {
    // "hierarchy-id:controller,list:path"
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
    std::string path = line.substr(second + 1);
    if (path == "/") path.clear();
    if (controllers.find(",memory,") != std::string::npos) return v1_available(cgroup_root + "/memory", path);
    if (line.compare(0, first + 1, "0:") == 0 && controllers == ",,") v2_path = path;
  }
  if (v2_path) return v2_available(cgroup_root, *v2_path);
  return std::nullopt;
}

std::optional<uint64_t> available_memory_bytes() {
  const auto machine = meminfo_available();
  const auto cgroup = cgroup_memory_available(read_text("/proc/self/cgroup"), "/sys/fs/cgroup");
  if (machine && cgroup) return std::min(*machine, *cgroup);
  return machine ? machine : cgroup;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace recmod
