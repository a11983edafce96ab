#include "recmod/dist/planner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>

#include "recmod/common/errors.h"
#include "recmod/common/memory.h"
#include "recmod/optim/row_update.h"

namespace recmod::dist {

namespace {

constexpr double kNoLimit = std::numeric_limits<double>::infinity();

std::string qualified_name(const TableShape& t) {
  return t.module + "." + t.name;
}

std::string rank_list(const std::vector<int64_t>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += str_cat(i ? ", " : "", ranks[i]);
  return "[" + out + "]";
}

/// The index of the table a request key names ("table" or "module.table").
size_t resolve_key(const std::vector<TableShape>& tables, const std::string& key) {
  std::vector<size_t> matches;
  const auto dot = key.rfind('.');
  for (size_t i = 0; i < tables.size(); ++i) {
    const bool match = dot == std::string::npos
                           ? tables[i].name == key
                           : tables[i].module == key.substr(0, dot) && tables[i].name == key.substr(dot + 1);
    if (match) matches.push_back(i);
  }
  if (matches.size() == 1) return matches[0];
  if (matches.empty()) {
    std::vector<std::string> names;
    for (const auto& t : tables) names.push_back(qualified_name(t));
    throw_input_error("sharding: no table '", key, "'; the embedding tables are ", join_names(names));
  }
  std::string modules;
  for (size_t i = 0; i < matches.size(); ++i)
    modules += str_cat(i ? (i + 1 == matches.size() ? " and " : ", ") : "", "'", tables[matches[i]].module, "'");
  throw_input_error("sharding: table '", key, "' is ambiguous: modules ", modules, " both have it; write '",
                    tables[matches[0]].module, ".", key, "' (module.table)");
}

void check_request(const TableShape& t, const TableRequest& r, int64_t world_size) {
  const std::string who = "sharding: table '" + qualified_name(t) + "'";
  for (auto rank : r.ranks)
    if (rank < 0 || rank >= world_size)
      throw_input_error(who, ": rank ", rank, " is outside [0, ", world_size, ") (world size ", world_size, ")");
  if (!r.ranks.empty() && !r.type)
    throw_input_error(who, ": ranks ", rank_list(r.ranks), " need a type (table_wise or column_wise)");
  if (!r.type || r.ranks.empty()) return;
  switch (*r.type) {
    case ShardingType::table_wise:
      if (r.ranks.size() != 1) throw_input_error(who, ": table_wise takes exactly one rank, got ", rank_list(r.ranks));
      break;
    case ShardingType::column_wise: {
      std::set<int64_t> seen;
      for (auto rank : r.ranks)
        if (!seen.insert(rank).second)
          throw_input_error(who, ": column_wise ranks must be distinct, rank ", rank, " repeats in ",
                            rank_list(r.ranks));
      if (static_cast<int64_t>(r.ranks.size()) > t.embedding_dim)
        throw_input_error(who, ": column_wise over ", r.ranks.size(),
                          " ranks needs at least as many columns, but embedding_dim is ", t.embedding_dim);
      break;
    }
    case ShardingType::row_wise:
    case ShardingType::data_parallel:
      throw_input_error(who, ": ", name_of(*r.type),
                        " uses every rank; ranks apply to table_wise and column_wise only");
  }
}

int64_t shard_bytes(const TableShape& t, const Shard& s, const PlannerOptions& o) {
  return s.rows * s.cols * t.bytes_per_element + optimizer_state_bytes(o.optimizer, s.rows, s.cols);
}

int64_t table_bytes(const TableShape& t, const PlannerOptions& o) {
  return shard_bytes(t, Shard{0, 0, t.num_embeddings, 0, t.embedding_dim}, o);
}

double features_of(const TableShape& t) {
  return static_cast<double>(std::max<size_t>(t.feature_names.size(), 1));
}

/// Estimated lookups per step of one shard on its rank.
double shard_lookups(const TableShape& t, ShardingType type, const Shard& s, const PlannerOptions& o, int64_t world) {
  const double b = static_cast<double>(o.batch_size_per_rank), f = features_of(t), p = o.pooling_factor;
  if (type == ShardingType::data_parallel) return b * f * p;
  const double phi = type == ShardingType::row_wise && t.num_embeddings > 0
                         ? static_cast<double>(s.rows) / static_cast<double>(t.num_embeddings)
                         : 1.0;
  return static_cast<double>(world) * b * f * p * phi;
}

TablePlan make_plan(const TableShape& t, ShardingType type, const std::vector<int64_t>& ranks, int64_t world) {
  TablePlan plan{t.module, t.name, type, {}};
  switch (type) {
    case ShardingType::data_parallel:
      for (int64_t r = 0; r < world; ++r) plan.shards.push_back(Shard{r, 0, t.num_embeddings, 0, t.embedding_dim});
      break;
    case ShardingType::table_wise:
      plan.shards.push_back(Shard{ranks.at(0), 0, t.num_embeddings, 0, t.embedding_dim});
      break;
    case ShardingType::row_wise:
      plan.shards = row_wise_shards(t.num_embeddings, t.embedding_dim, world);
      break;
    case ShardingType::column_wise:
      plan.shards = column_wise_shards(t.num_embeddings, t.embedding_dim, ranks);
      break;
  }
  return plan;
}

/// Per-rank bytes and lookups while placing, with the ranks kept sorted by
/// (bytes, lookups, rank) and by (lookups, bytes, rank).
class Loads {
 public:
  Loads(int64_t world, const std::vector<TableShape>& tables, const PlannerOptions& options)
      : bytes_(static_cast<size_t>(world), 0),
        lookups_(static_cast<size_t>(world), 0),
        tables_(tables),
        options_(options) {
    for (int64_t r = 0; r < world; ++r) {
      by_bytes_.insert({0, 0.0, r});
      by_lookups_.insert({0.0, 0, r});
    }
  }
  void add(size_t table, const TablePlan& plan) {
    const auto& t = tables_[table];
    const auto world = static_cast<int64_t>(bytes_.size());
    for (const auto& s : plan.shards) {
      const auto r = static_cast<size_t>(s.rank);
      by_bytes_.erase({bytes_[r], lookups_[r], s.rank});
      by_lookups_.erase({lookups_[r], bytes_[r], s.rank});
      bytes_[r] += shard_bytes(t, s, options_);
      lookups_[r] += shard_lookups(t, plan.type, s, options_, world);
      by_bytes_.insert({bytes_[r], lookups_[r], s.rank});
      by_lookups_.insert({lookups_[r], bytes_[r], s.rank});
    }
  }
  /// The `k` ranks with the fewest bytes, fewest first.
  std::vector<int64_t> least_bytes(size_t k) const {
    std::vector<int64_t> out;
    for (auto it = by_bytes_.begin(); it != by_bytes_.end() && out.size() < k; ++it) out.push_back(std::get<2>(*it));
    return out;
  }
  /// The rank with the fewest lookups (then bytes) that stays within `cap`
  /// bytes after taking `extra` more; nullopt when none does.
  std::optional<int64_t> least_lookups_within(int64_t extra, double cap) const {
    for (const auto& [lookups, bytes, rank] : by_lookups_)
      if (static_cast<double>(bytes + extra) <= cap) return rank;
    return std::nullopt;
  }

 private:
  std::vector<int64_t> bytes_;
  std::vector<double> lookups_;
  std::set<std::tuple<int64_t, double, int64_t>> by_bytes_;
  std::set<std::tuple<double, int64_t, int64_t>> by_lookups_;
  const std::vector<TableShape>& tables_;
  const PlannerOptions& options_;
};

/// One placement: requests as resolved, `row_wise[i]` for auto tables forced
/// row_wise; returns the plans and the index of an auto table that would take
/// its rank above `cap` (nullopt when none did).
std::pair<std::vector<TablePlan>, std::optional<size_t>> place(const std::vector<TableShape>& tables,
                                                               const std::vector<std::optional<TableRequest>>& requests,
                                                               const std::vector<bool>& row_wise,
                                                               const std::vector<size_t>& largest_first, double cap,
                                                               const PlannerOptions& options) {
  const int64_t world = options.world_size;
  std::vector<TablePlan> plans(tables.size());
  Loads loads(world, tables, options);
  // Fixed placements first: rank lists, row_wise and data_parallel requests, forced row_wise.
  for (size_t i = 0; i < tables.size(); ++i) {
    const auto& req = requests[i];
    std::optional<ShardingType> type;
    if (req && req->type &&
        (!req->ranks.empty() || *req->type == ShardingType::row_wise || *req->type == ShardingType::data_parallel))
      type = req->type;
    else if (row_wise[i])
      type = ShardingType::row_wise;
    if (!type) continue;
    plans[i] = make_plan(tables[i], *type, req ? req->ranks : std::vector<int64_t>{}, world);
    loads.add(i, plans[i]);
  }
  for (size_t i : largest_first) {
    if (!plans[i].shards.empty()) continue;
    const auto& t = tables[i];
    const auto& req = requests[i];
    if (req && req->type == ShardingType::column_wise) {
      auto ranks = loads.least_bytes(static_cast<size_t>(std::min(world, t.embedding_dim)));
      std::sort(ranks.begin(), ranks.end());
      plans[i] = make_plan(t, ShardingType::column_wise, ranks, world);
    } else {
      auto rank = loads.least_lookups_within(table_bytes(t, options), world > 1 ? cap : kNoLimit);
      const bool requested = req && req->type == ShardingType::table_wise;
      if (!rank && !requested) return {std::move(plans), i};  // no rank can take it whole: row_wise
      if (!rank) rank = loads.least_bytes(1).at(0);
      plans[i] = make_plan(t, ShardingType::table_wise, {*rank}, world);
    }
    loads.add(i, plans[i]);
  }
  return {std::move(plans), std::nullopt};
}

/// InputError when a rank holds more than memory_per_rank.
void check_fits(const ShardingPlan& plan, const std::vector<TableShape>& tables, const PlannerOptions& options) {
  if (!options.memory_per_rank) return;
  const double available = *options.memory_per_rank;
  const auto stats = plan_stats(plan, tables, options);
  size_t worst = 0, over = 0;
  for (size_t r = 0; r < stats.ranks.size(); ++r) {
    if (static_cast<double>(stats.ranks[r].total_bytes()) > available) ++over;
    if (stats.ranks[r].total_bytes() > stats.ranks[worst].total_bytes()) worst = r;
  }
  if (over == 0) return;
  const auto& w = stats.ranks[worst];
  double total = 0;
  for (const auto& r : stats.ranks) total += static_cast<double>(r.total_bytes());
  throw_input_error("the sharding plan does not fit memory_per_rank: rank ", worst, " needs ",
                    format_bytes(static_cast<double>(w.total_bytes())), " (", w.total_bytes(), " bytes: parameters ",
                    format_bytes(static_cast<double>(w.parameter_bytes)), " + optimizer state ",
                    format_bytes(static_cast<double>(w.optimizer_bytes)), ") but ", format_bytes(available), " (",
                    static_cast<int64_t>(available), " bytes) is available; ", over, " of ", stats.ranks.size(),
                    " ranks are over; all shards together need ", format_bytes(total), ", so at least ",
                    static_cast<int64_t>(std::ceil(total / available)), " ranks of this size");
}

std::string fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

/// 1234567.0 -> "1.23M": lookups and such.
std::string format_count(double v) {
  const char* units[] = {"", "K", "M", "G", "T", "P"};
  int u = 0;
  while (std::abs(v) >= 1000 && u < 5) {
    v /= 1000;
    ++u;
  }
  return u == 0 ? fixed(v, 0) : fixed(v, 2) + units[u];
}

const TableShape& shape_of(const std::vector<TableShape>& tables, const TablePlan& tp) {
  for (const auto& t : tables)
    if (t.module == tp.module && t.name == tp.table) return t;
  throw_input_error("sharding plan: table '", tp.module, ".", tp.table, "' is not among the model's embedding tables");
}

std::vector<int64_t> ranks_of(const TablePlan& tp) {
  std::vector<int64_t> ranks;
  for (const auto& s : tp.shards) ranks.push_back(s.rank);
  return ranks;
}

}  // namespace

std::vector<Shard> row_wise_shards(int64_t num_embeddings, int64_t embedding_dim, int64_t world_size) {
  TORCH_CHECK(world_size > 0 && num_embeddings >= 0, "row_wise_shards: world_size ", world_size, ", rows ",
              num_embeddings);
  const int64_t block = (num_embeddings + world_size - 1) / world_size;
  std::vector<Shard> shards;
  for (int64_t r = 0; r < world_size; ++r) {
    const int64_t offset = std::min(r * block, num_embeddings);
    shards.push_back(Shard{r, offset, std::min(block, num_embeddings - offset), 0, embedding_dim});
  }
  return shards;
}

std::vector<Shard> column_wise_shards(int64_t num_embeddings, int64_t embedding_dim,
                                      const std::vector<int64_t>& ranks) {
  const auto k = static_cast<int64_t>(ranks.size());
  TORCH_CHECK(k > 0 && k <= embedding_dim, "column_wise_shards: ", k, " ranks for ", embedding_dim, " columns");
  std::vector<Shard> shards;
  int64_t offset = 0;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t cols = embedding_dim / k + (i < embedding_dim % k ? 1 : 0);
    shards.push_back(Shard{ranks[static_cast<size_t>(i)], 0, num_embeddings, offset, cols});
    offset += cols;
  }
  return shards;
}

int64_t optimizer_state_bytes(const optim::OptimizerOptions& optimizer, int64_t rows, int64_t cols) {
  const auto rule = optim::row_update_of(optimizer.type(), "embedding optimizer");
  return rows * optim::state_per_row(rule, cols) * static_cast<int64_t>(sizeof(float));
}

ShardingPlan plan_sharding(const std::vector<TableShape>& tables, const ShardingRequest& request,
                           const PlannerOptions& options) {
  if (options.world_size < 1) throw_input_error("sharding: world size must be >= 1, got ", options.world_size);
  if (options.batch_size_per_rank < 1)
    throw_input_error("sharding: batch size per rank must be >= 1, got ", options.batch_size_per_rank);
  if (!(options.pooling_factor >= 0))
    throw_input_error("sharding: pooling factor must be >= 0, got ", options.pooling_factor);
  if (options.memory_per_rank && !(*options.memory_per_rank > 0))
    throw_input_error("sharding: memory per rank must be > 0 bytes, got ", *options.memory_per_rank);
  const int64_t world = options.world_size;

  // Requests, by table index.
  std::vector<std::optional<TableRequest>> requests(tables.size());
  std::vector<std::string> request_keys(tables.size());
  for (const auto& [key, req] : request.tables) {
    const size_t i = resolve_key(tables, key);
    if (requests[i])
      throw_input_error("sharding: table '", qualified_name(tables[i]), "' is requested twice ('", request_keys[i],
                        "' and '", key, "')");
    check_request(tables[i], req, world);
    requests[i] = req;
    request_keys[i] = key;
  }

  // The fair share and the cap of a table_wise placement.
  double total = 0;
  for (size_t i = 0; i < tables.size(); ++i) {
    const double copies =
        requests[i] && requests[i]->type == ShardingType::data_parallel ? static_cast<double>(world) : 1.0;
    total += copies * static_cast<double>(table_bytes(tables[i], options));
  }
  double cap = total / static_cast<double>(world) * (1 + options.balance_slack);
  if (options.memory_per_rank) cap = std::min(cap, *options.memory_per_rank);

  std::vector<size_t> largest_first(tables.size());
  std::iota(largest_first.begin(), largest_first.end(), 0);
  std::stable_sort(largest_first.begin(), largest_first.end(), [&](size_t a, size_t b) {
    return table_bytes(tables[a], options) > table_bytes(tables[b], options);
  });

  // Greedy: each table_wise placement that overshoots makes that table
  // row_wise, and the placement starts over (at most one round per table).
  std::vector<bool> row_wise(tables.size(), false);
  std::vector<TablePlan> plans;
  while (true) {
    auto [placed, overshoot] = place(tables, requests, row_wise, largest_first, cap, options);
    if (!overshoot) {
      plans = std::move(placed);
      break;
    }
    row_wise[*overshoot] = true;
  }
  ShardingPlan plan{world, std::move(plans)};

  if (options.memory_per_rank) {
    try {
      check_fits(plan, tables, options);
    } catch (const InputError&) {
      // Every unrequested table row_wise spreads the bytes most evenly.
      for (size_t i = 0; i < tables.size(); ++i) row_wise[i] = !(requests[i] && requests[i]->type) && world > 1;
      auto placed = place(tables, requests, row_wise, largest_first, kNoLimit, options).first;
      ShardingPlan spread{world, std::move(placed)};
      check_fits(spread, tables, options);  // throws with this plan's numbers when it does not fit either
      return spread;
    }
  }
  return plan;
}

PlanStats plan_stats(const ShardingPlan& plan, const std::vector<TableShape>& tables, const PlannerOptions& options) {
  const int64_t world = plan.world_size;
  PlanStats stats;
  stats.ranks.resize(static_cast<size_t>(world));
  const double b = static_cast<double>(options.batch_size_per_rank), p = options.pooling_factor,
               w = static_cast<double>(world);
  double comm_everywhere = 0;  // traffic every rank has with a shard on another rank
  std::vector<double> comm_extra(static_cast<size_t>(world), 0.0);
  for (const auto& tp : plan.tables) {
    const auto& t = shape_of(tables, tp);
    const double f = features_of(t);
    for (const auto& s : tp.shards) {
      if (s.rank < 0 || s.rank >= world)
        throw_input_error("sharding plan: table '", tp.module, ".", tp.table, "' has a shard on rank ", s.rank,
                          ", outside [0, ", world, ")");
      auto& r = stats.ranks[static_cast<size_t>(s.rank)];
      r.parameter_bytes += s.rows * s.cols * t.bytes_per_element;
      r.optimizer_bytes += optimizer_state_bytes(options.optimizer, s.rows, s.cols);
      r.lookups_per_step += shard_lookups(t, tp.type, s, options, world);
      if (tp.type == ShardingType::data_parallel) {
        r.comm_bytes_per_step += 2 * (w - 1) * b * f * (8 * p + 4 + 4 * static_cast<double>(t.embedding_dim));
        continue;
      }
      const double phi = tp.type == ShardingType::row_wise && t.num_embeddings > 0
                             ? static_cast<double>(s.rows) / static_cast<double>(t.num_embeddings)
                             : 1.0;
      const double x = b * f * (8 * p * phi + 4 + 8 * static_cast<double>(s.cols));
      comm_everywhere += x;                                    // each other rank: x
      comm_extra[static_cast<size_t>(s.rank)] += (w - 2) * x;  // the shard's rank: (world - 1) x
    }
  }
  double max_bytes = 0, sum_bytes = 0;
  for (size_t r = 0; r < stats.ranks.size(); ++r) {
    stats.ranks[r].comm_bytes_per_step += comm_everywhere + comm_extra[r];
    max_bytes = std::max(max_bytes, static_cast<double>(stats.ranks[r].total_bytes()));
    sum_bytes += static_cast<double>(stats.ranks[r].total_bytes());
  }
  stats.balance = sum_bytes > 0 ? max_bytes / (sum_bytes / w) : 1.0;
  return stats;
}

std::optional<double> parse_byte_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!(value >= 0) || std::isinf(value) || text.find_first_of("xXpPnN") != std::string::npos) return std::nullopt;
  std::string unit = text.substr(used);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();  // "GB", "GIB"
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();  // "GI"
  const std::string units = "KMGT";
  if (unit.empty() || unit == "B") return value;
  if (unit.size() != 1 || units.find(unit[0]) == std::string::npos) return std::nullopt;
  return value * std::pow(1024.0, static_cast<double>(units.find(unit[0]) + 1));
}

std::string format_ranks(std::vector<int64_t> ranks) {
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    out += str_cat(out.empty() ? "" : ",", ranks[i]);
    if (j > i) out += str_cat("-", ranks[j]);
    i = j + 1;
  }
  return out;
}

std::string format_plan(const ShardingPlan& plan, const std::vector<TableShape>& tables,
                        const PlannerOptions& options) {
  const auto stats = plan_stats(plan, tables, options);
  std::ostringstream os;
  os << "sharding plan: " << plan.tables.size() << (plan.tables.size() == 1 ? " table" : " tables") << " on "
     << plan.world_size << (plan.world_size == 1 ? " rank" : " ranks") << " (device " << options.device << ", batch "
     << options.batch_size_per_rank << " per rank, pooling factor " << options.pooling_factor
     << ", embedding optimizer " << options.optimizer.type() << ", memory per rank "
     << (options.memory_per_rank ? format_bytes(*options.memory_per_rank) : std::string("unlimited")) << ")\n";
  os << "estimates, not measurements: float32 optimizer state; lookups and communication (sent + received) per "
        "step\n\n";

  size_t name_width = 5;
  for (const auto& tp : plan.tables) name_width = std::max(name_width, tp.module.size() + 1 + tp.table.size());
  std::vector<std::string> ranks_text;
  size_t ranks_width = 5;
  for (const auto& tp : plan.tables) {
    ranks_text.push_back(tp.type == ShardingType::data_parallel ? "all" : format_ranks(ranks_of(tp)));
    ranks_width = std::max(ranks_width, ranks_text.back().size());
  }
  os << std::left << std::setw(static_cast<int>(name_width + 2)) << "table" << std::setw(15) << "type"
     << std::setw(static_cast<int>(ranks_width + 2)) << "ranks" << std::setw(22) << "rows x dim" << std::right
     << std::setw(12) << "parameters" << std::setw(12) << "optimizer"
     << "\n";
  int64_t total_params = 0, total_opt = 0;
  for (size_t i = 0; i < plan.tables.size(); ++i) {
    const auto& tp = plan.tables[i];
    const auto& t = shape_of(tables, tp);
    const int64_t params = t.num_embeddings * t.embedding_dim * t.bytes_per_element;
    const int64_t opt = optimizer_state_bytes(options.optimizer, t.num_embeddings, t.embedding_dim);
    total_params += params;
    total_opt += opt;
    os << std::left << std::setw(static_cast<int>(name_width + 2)) << (tp.module + "." + tp.table) << std::setw(15)
       << name_of(tp.type) << std::setw(static_cast<int>(ranks_width + 2)) << ranks_text[i] << std::setw(22)
       << str_cat(t.num_embeddings, " x ", t.embedding_dim) << std::right << std::setw(12)
       << format_bytes(static_cast<double>(params)) << std::setw(12) << format_bytes(static_cast<double>(opt)) << "\n";
  }
  os << "all tables (one copy): parameters " << format_bytes(static_cast<double>(total_params)) << ", optimizer state "
     << format_bytes(static_cast<double>(total_opt)) << "\n\n";

  os << std::left << std::setw(8) << "rank" << std::right << std::setw(12) << "parameters" << std::setw(12)
     << "optimizer" << std::setw(12) << "total" << std::setw(16) << "lookups/step" << std::setw(16) << "comm/step"
     << "\n";
  for (size_t r = 0; r < stats.ranks.size(); ++r) {
    const auto& s = stats.ranks[r];
    os << std::left << std::setw(8) << r << std::right << std::setw(12)
       << format_bytes(static_cast<double>(s.parameter_bytes)) << std::setw(12)
       << format_bytes(static_cast<double>(s.optimizer_bytes)) << std::setw(12)
       << format_bytes(static_cast<double>(s.total_bytes())) << std::setw(16) << format_count(s.lookups_per_step)
       << std::setw(16) << format_bytes(s.comm_bytes_per_step) << "\n";
  }
  os << "\nbalance (max/mean of per-rank bytes): " << fixed(stats.balance, 3) << "\n";
  return os.str();
}

nlohmann::json plan_to_json(const ShardingPlan& plan, const std::vector<TableShape>& tables,
                            const PlannerOptions& options) {
  const auto stats = plan_stats(plan, tables, options);
  nlohmann::json out;
  out["world_size"] = plan.world_size;
  out["device"] = options.device;
  out["batch_size_per_rank"] = options.batch_size_per_rank;
  out["pooling_factor"] = options.pooling_factor;
  out["embedding_optimizer"] = options.optimizer.type();
  out["memory_per_rank"] = options.memory_per_rank ? nlohmann::json(*options.memory_per_rank) : nlohmann::json(nullptr);
  out["tables"] = nlohmann::json::array();
  for (const auto& tp : plan.tables) {
    const auto& t = shape_of(tables, tp);
    nlohmann::json shards = nlohmann::json::array();
    for (const auto& s : tp.shards)
      shards.push_back({{"rank", s.rank},
                        {"row_offset", s.row_offset},
                        {"rows", s.rows},
                        {"col_offset", s.col_offset},
                        {"cols", s.cols}});
    out["tables"].push_back(
        {{"module", tp.module},
         {"table", tp.table},
         {"type", name_of(tp.type)},
         {"num_embeddings", t.num_embeddings},
         {"embedding_dim", t.embedding_dim},
         {"parameter_bytes", t.num_embeddings * t.embedding_dim * t.bytes_per_element},
         {"optimizer_bytes", optimizer_state_bytes(options.optimizer, t.num_embeddings, t.embedding_dim)},
         {"shards", shards}});
  }
  out["ranks"] = nlohmann::json::array();
  for (size_t r = 0; r < stats.ranks.size(); ++r) {
    const auto& s = stats.ranks[r];
    out["ranks"].push_back({{"rank", r},
                            {"parameter_bytes", s.parameter_bytes},
                            {"optimizer_bytes", s.optimizer_bytes},
                            {"lookups_per_step", s.lookups_per_step},
                            {"comm_bytes_per_step", s.comm_bytes_per_step}});
  }
  out["balance"] = stats.balance;
  return out;
}

}  // namespace recmod::dist
