#include "recmod/dist/sharding_plan.h"

namespace recmod::dist {

const std::vector<std::string>& sharding_type_names() {
  static const std::vector<std::string> names = {"data_parallel", "table_wise", "row_wise", "column_wise"};
  return names;
}

std::string name_of(ShardingType type) {
  switch (type) {
    case ShardingType::data_parallel:
      return "data_parallel";
    case ShardingType::table_wise:
      return "table_wise";
    case ShardingType::row_wise:
      return "row_wise";
    case ShardingType::column_wise:
      return "column_wise";
  }
  return "unknown";
}

std::optional<ShardingType> sharding_type_from(const std::string& name) {
  for (auto type :
       {ShardingType::data_parallel, ShardingType::table_wise, ShardingType::row_wise, ShardingType::column_wise})
    if (name_of(type) == name) return type;
  return std::nullopt;
}

const TablePlan* ShardingPlan::find(const std::string& module, const std::string& table) const {
  for (const auto& t : tables)
    if (t.module == module && t.table == table) return &t;
  return nullptr;
}

}  // namespace recmod::dist
