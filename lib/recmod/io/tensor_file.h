#pragma once
// Checkpoint files: a dict of named tensors in torch.save's zip format, so
// recmod and PyTorch read each other's files.
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/io/atomic_file.h"

namespace recmod::io {

/// Writes a dict of tensors that PyTorch's torch.load reads, also with
/// weights_only=True (torch.save's zip format and pickle; see pickle_tensor_dict),
/// atomically: temp file in the same directory + fsync + rename; on any error
/// the previous file at `path` is untouched and the temp file removed.
/// Tensors are written as CPU tensors holding only their own elements (a view
/// does not drag its whole storage along). Throws FileWriteError.
void save_tensors(const std::string& path, const StateDict& tensors);
/// save_tensors of deferred tensors (write_tensors' rules for the makes).
void save_tensors(const std::string& path, const DeferredStateDict& tensors);

/// The bytes save_tensors writes, streamed through `sink` in order (for
/// callers that place or hash them themselves); memory beyond the tensors is
/// one tensor's CPU copy at most.
void write_tensors(const StateDict& tensors, const ByteSink& sink);

/// write_tensors of deferred tensors. Every `make` is called exactly once,
/// in order, even after the sink has failed (the makes may be collectives
/// other ranks take part in); what a make returns must have the announced
/// shape and dtype (std::logic_error otherwise). The failure is rethrown
/// after the last make.
void write_tensors(const DeferredStateDict& tensors, const ByteSink& sink);
/// Calls every make in order and drops the results: what a rank that does
/// not write does while rank 0 writes the same entries.
void make_and_drop(const DeferredStateDict& tensors);

/// The same bytes in memory (small dicts; tests).
std::vector<char> tensors_to_bytes(const StateDict& tensors);

/// Reads such a file, written by recmod or by Python's torch.save (torch 1.13
/// and 2.x) of a dict of tensors: torch.save(model.state_dict(), path) (an
/// OrderedDict; its _metadata is ignored), dict(...) of it, or state_dict(
/// keep_vars=True) (Parameters). Views saved together share their storage
/// again. CheckpointError with the path on anything else (missing file,
/// a legacy non-zip torch.save file, an unknown format version, truncated or
/// corrupt: every record's CRC-32 is verified and every size checked against
/// the file before it is allocated (ZipArchive), other Python objects, a
/// tensor reaching past its storage). Memory: the tensors' bytes, read
/// straight into their storages (no copy of the file). Keys keep the file's
/// order.
StateDict load_tensors(const std::string& path);

}  // namespace recmod::io
