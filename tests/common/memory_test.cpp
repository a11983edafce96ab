// What a memory cgroup leaves a process (cgroup_memory_available), over
// made-up cgroup trees of both versions: a container's limit that
// /proc/meminfo does not show.
#include "recmod/common/memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support/test_util.h"

namespace recmod {
namespace memory_test {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string fresh_root(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("recmod_cgroup_" + name + "_" + std::to_string(::getpid()));
  test::remove_tree(dir.string());
  fs::create_directories(dir);
  return dir.string();
}

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(CgroupMemory, V1HierarchicalLimitLessUsageLessInactiveFilePages) {
  const std::string root = fresh_root("v1");
  const std::string dir = root + "/memory/jobs/42";
  write(dir + "/memory.limit_in_bytes", "9223372036854771712\n");  // its own: none
  write(dir + "/memory.usage_in_bytes", std::to_string(700 * kMiB) + "\n");
  write(dir + "/memory.stat", "cache 1\nhierarchical_memory_limit " + std::to_string(1024 * kMiB) +
                                  "\ntotal_inactive_file " + std::to_string(100 * kMiB) + "\n");
  const std::string proc = "12:pids:/jobs/42\n4:memory:/jobs/42\n0::/\n";
  EXPECT_EQ(cgroup_memory_available(proc, root), 424 * kMiB);
  // no limit anywhere
  write(dir + "/memory.stat", "hierarchical_memory_limit 9223372036854771712\n");
  EXPECT_EQ(cgroup_memory_available(proc, root), std::nullopt);
  // a cgroup namespace: the process's own cgroup is the mount's root
  write(root + "/memory/memory.limit_in_bytes", std::to_string(512 * kMiB));
  write(root + "/memory/memory.usage_in_bytes", std::to_string(600 * kMiB));
  EXPECT_EQ(cgroup_memory_available("4:memory:/elsewhere\n", root), 0u) << "over the limit: nothing left";
  test::remove_tree(root);
}

TEST(CgroupMemory, V2SmallestRoomOverTheCgroupAndItsParents) {
  const std::string root = fresh_root("v2");
  write(root + "/cgroup.controllers", "memory\n");  // the root: no memory.max
  write(root + "/a/memory.max", std::to_string(2048 * kMiB) + "\n");
  write(root + "/a/memory.current", std::to_string(1900 * kMiB) + "\n");  // 148 MiB left in the parent
  write(root + "/a/b/memory.max", "max\n");
  write(root + "/a/b/memory.current", std::to_string(300 * kMiB) + "\n");
  write(root + "/a/b/memory.stat", "anon 1\ninactive_file " + std::to_string(50 * kMiB) + "\n");
  EXPECT_EQ(cgroup_memory_available("0::/a/b\n", root), 148 * kMiB);
  write(root + "/a/b/memory.max", std::to_string(400 * kMiB) + "\n");  // 150 MiB left under b's own
  write(root + "/a/memory.max", "max\n");
  EXPECT_EQ(cgroup_memory_available("0::/a/b\n", root), 150 * kMiB);
  write(root + "/a/b/memory.max", "max\n");
  EXPECT_EQ(cgroup_memory_available("0::/a/b\n", root), std::nullopt);
  EXPECT_EQ(cgroup_memory_available("", root), std::nullopt);
  EXPECT_EQ(cgroup_memory_available("garbage\n", root + "/missing"), std::nullopt);
  test::remove_tree(root);
}

TEST(CgroupMemory, ThisProcessGetsAnAnswer) {
  const auto available = available_memory_bytes();
  ASSERT_TRUE(available.has_value()) << "/proc/meminfo is readable here";
  EXPECT_GT(*available, 0u);
}

}  // namespace memory_test
}  // namespace recmod
