#pragma once
// Replacing a file so that readers (and a crash) see either the old or the
// new contents, never a mix.
#include <functional>
#include <string>
#include <string_view>

#include "recmod/common/errors.h"

namespace recmod::io {

/// A file could not be written (exit 1); the message names the path and the OS error.
class FileWriteError : public Error {
 public:
  using Error::Error;
};

/// Writes `bytes` to a temp file next to `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory. On any error the previous file at `path`
/// is untouched, the temp file is removed, and FileWriteError is thrown.
void write_file_atomically(const std::string& path, std::string_view bytes);

/// The same, with `before_commit(temp_path)` called after the temp file is
/// complete and before the rename; if it throws, the write is abandoned as for
/// any error (the exception propagates). A seam for tests and for checks.
void write_file_atomically(const std::string& path, std::string_view bytes,
                           const std::function<void(const std::string& temp_path)>& before_commit);

/// Receives a file's bytes, in order.
using ByteSink = std::function<void(const void* data, size_t size)>;

/// The streaming form, for files too large to hold twice in memory (a
/// checkpoint of multi-GiB tables): `produce(sink)` writes the contents
/// through `sink`, straight into the temp file. Same guarantees as above; an
/// exception from `produce` abandons the write and propagates.
void write_file_atomically(const std::string& path, const std::function<void(const ByteSink& sink)>& produce,
                           const std::function<void(const std::string& temp_path)>& before_commit = nullptr);

}  // namespace recmod::io
