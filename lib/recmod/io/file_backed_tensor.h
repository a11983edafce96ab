#pragma once
// Tensors whose bytes live in a file rather than in the process's memory:
// for a tensor larger than the memory, such as a whole embedding table that
// rank 0 assembles from the ranks' shards to write into model.pt.
#include <torch/torch.h>

#include <string>

namespace recmod::io {

/// A zero-filled CPU tensor of `sizes` and `dtype` whose storage is a shared
/// mapping of a new file in `dir`, a file without a name (O_TMPFILE, or
/// unlinked at once where the file system lacks it): nothing is left in
/// `dir`, whatever happens to the process. Its pages belong to the page
/// cache: the kernel writes them back to the file and reclaims them under
/// memory pressure, so the process holds what the kernel lets it, not the
/// tensor's size. The file's blocks are reserved up front (posix_fallocate),
/// so a disk without room is a FileWriteError naming `dir` and the bytes,
/// here, not a SIGBUS at a later write. The file goes with the storage.
torch::Tensor file_backed_zeros(torch::IntArrayRef sizes, torch::Dtype dtype, const std::string& dir);

/// Whether `tensor`'s storage was made by file_backed_zeros.
bool is_file_backed(const torch::Tensor& tensor);

}  // namespace recmod::io
