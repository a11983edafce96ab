#pragma once
// Checkpoint tensors that use the file's pages in place (memory-mapped)
// instead of a copy on the heap: loading a model then costs the CRC-32 pass
// over the file and no memory of the process's own for the tensors' bytes
// (issue 18).
#include <string>

#include "recmod/common/state_dict.h"

namespace recmod::io {

/// load_tensors (same files, same checks, same errors; every record's CRC-32
/// verified) with each tensor's storage in a private copy-on-write mapping
/// of the file (io::MappedCheckpoint): the verification reads every page
/// once; they stay clean pages of the file (shared with the page cache,
/// reclaimable), and a write to a tensor copies only the page it writes
/// (the file never changes). A file cut short under the mapping reads as
/// zeros and is reported (check_mapped_unchanged), not a SIGBUS. Records
/// that are not 64-byte aligned (not torch.save's layout) are read onto the
/// heap as load_tensors does. With `release_verified`, each record's pages
/// are given back as its CRC-32 pass goes (ZipArchive::map_record): the
/// verification then leaves no page of the file resident in this process,
/// for a caller that reads only parts of the tensors (a rank's shards) and
/// releases what it reads (release_mapped_bytes).
StateDict map_tensors(const std::string& path, bool release_verified = false);

/// Whether `tensor`'s storage is the pages of a mapped checkpoint.
bool is_mapped(const torch::Tensor& tensor);

/// CheckpointError naming the file when a file that tensors of `tensors`
/// are mapped from was cut short or written in place since it was mapped
/// (MappedCheckpoint::check_unchanged): call it after using them and before
/// trusting what was computed from them. Tensors on the heap are not checked.
void check_mapped_unchanged(const StateDict& tensors);

/// Lets the kernel take back the mapped pages of `tensors` from this process
/// (MADV_DONTNEED: they stay in the page cache and are mapped again, from
/// the file, when read). Only for tensors not written since map_tensors: a
/// write lives in the page it copied, which this drops.
void release_mapped_pages(const StateDict& tensors);
/// The same for the whole pages of bytes [first, end) of a mapped tensor's
/// data (offsets from tensor.data_ptr()); nothing for a tensor on the heap.
void release_mapped_bytes(const torch::Tensor& tensor, int64_t first, int64_t end);

}  // namespace recmod::io
