#pragma once
// RECMOD_CHECK_INPUT: TORCH_CHECK's shape for a caller's mistake.
#include "recmod/common/errors.h"

/// Throws InputError with the streamed message when `cond` is false: for a
/// mistake a caller can make (a bad option, an input of the wrong shape).
/// TORCH_CHECK stays for internal invariants, which only a bug in recmod can
/// break (docs/architecture.md, "Errors").
#define RECMOD_CHECK_INPUT(cond, ...)                      \
  do {                                                     \
    if (!(cond)) ::recmod::throw_input_error(__VA_ARGS__); \
  } while (false)
