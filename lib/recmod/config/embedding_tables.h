#pragma once
// The embedding tables of a model, read from the nodes' YAML `tables:` lists
// without building anything: what the sharding planner and `recmod plan`
// need, for models far larger than this machine's memory.
#include <vector>

#include "recmod/config/model_config.h"
#include "recmod/dist/sharding_plan.h"

namespace recmod::config {

/// The node types whose YAML has a `tables:` list of embedding tables.
const std::vector<std::string>& embedding_node_types();

/// Every embedding table of `spec`, in node order then table order: the node
/// name as module, name, num_embeddings, embedding_dim, feature_names
/// (default: the table's name), float32 storage. Reads only those keys (the
/// node builders check the rest) and allocates nothing, so it does not check
/// the tables against available memory. ConfigError at the key for a missing
/// or non-positive size, a table name that is empty or has a '.', or a
/// duplicate name within a node.
std::vector<dist::TableShape> embedding_tables_of(const ModelSpec& spec);

/// The tables inside EmbeddingTower and EmbeddingTowerCollection nodes (each
/// tower's `embedding:` node map), read as embedding_tables_of reads a
/// node's, with module "<node>.embedding" / "<node>.towers.<i>.embedding"
/// (the module paths of the built model). A distributed run keeps towers
/// replicated on every rank (their gradients all-reduced as dense), so
/// `recmod plan` places these tables data_parallel (towers_sharding_request).
std::vector<dist::TableShape> tower_tables_of(const ModelSpec& spec);

/// `request` with every tower table (tower_tables_of) fixed to
/// data_parallel, what a distributed run does with them.
dist::ShardingRequest towers_sharding_request(const ModelSpec& spec, dist::ShardingRequest request);

}  // namespace recmod::config
