// clsx::Error: every user-facing failure of the C++ library (bad artifact, bad image, bad input).
#pragma once

#include <stdexcept>
#include <string>

namespace clsx {

/// A mistake in the input, never a crash: missing sidecar, newer metadata schema, wrong input size,
/// corrupt image, an engine built for another GPU. `what()` is one line that names the file.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace clsx
