#pragma once
// A small, strict reader for the pickle (data.pkl) that Python's torch.save
// writes for a dict of tensors, e.g. torch.save(model.state_dict(), path): an
// OrderedDict (with its _metadata, which is ignored) or a dict, of tensors or
// Parameters, in pickle protocols 2-5. libtorch's own unpickler cannot read
// the OrderedDict form and is not hardened against malformed input; this one
// checks every read and every tensor's extent against its storage.
#include <functional>
#include <string>
#include <string_view>

#include "recmod/common/state_dict.h"

namespace recmod::io {

/// Returns the CPU bytes of the storage that data.pkl names `key` (the zip
/// record data/<key>); throws CheckpointError when there is none.
using StorageRecordReader = std::function<c10::Storage(const std::string& key)>;

/// Runs `pickle` and returns its dict of tensors, keys in the pickle's order.
/// Tensors that shared a storage when saved share one again (views stay views).
/// Anything else (another kind of value, an unknown global, a bad opcode, a
/// truncated pickle, a tensor reaching past its storage) throws CheckpointError
/// with a message starting "<origin>: ".
StateDict unpickle_tensor_dict(std::string_view pickle, const StorageRecordReader& read_storage,
                               const std::string& origin);

/// The writer's side: the data.pkl that Python's torch.save writes for
/// {key: tensor} (protocol 2; every tensor torch._utils._rebuild_tensor_v2 of
/// a persistent ('storage', torch.<T>Storage, "<i>", "cpu", numel)), using
/// only globals that torch.load(weights_only=True), the default since
/// PyTorch 2.6, allows. Tensor i is described as a contiguous tensor at
/// offset 0 of storage "<i>": its record data/<i> must hold its elements in
/// row-major order. Throws InputError for a dtype without a storage class.
std::string pickle_tensor_dict(const StateDict& tensors);

}  // namespace recmod::io
