#pragma once
// Typed errors thrown by the library. Only main() turns them into
// "recmod: ..." messages and exit codes (2 for usage/config, 1 otherwise).
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace recmod {

/// Base of all recmod errors; what() is the complete user-facing message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad command line (exit 2).
class UsageError : public Error {
 public:
  using Error::Error;
};

/// A bad model config; the message starts with "file:line:col: " (exit 2).
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// Bad input data or bad arguments to a module (exit 1).
class InputError : public Error {
 public:
  using Error::Error;
};

/// A checkpoint that cannot be read or does not fit the model (exit 1).
class CheckpointError : public Error {
 public:
  using Error::Error;
};

/// A distributed run lost a peer, timed out, or its ranks disagree (exit 1).
class DistributedError : public Error {
 public:
  using Error::Error;
};

/// Streams all arguments into one string (works with torch's IntArrayRef,
/// ScalarType, ... since they have operator<<).
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
[[noreturn]] void throw_input_error(const Args&... args) {
  throw InputError(str_cat(args...));
}

/// "[a, b, c]": how key lists appear in messages.
inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return "[" + out + "]";
}

}  // namespace recmod
