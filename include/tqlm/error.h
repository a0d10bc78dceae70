// One error type for everything a user can cause (bad file, bad flag, bad request): callers
// catch it at the edge (CLI, server) and print its message; nothing below aborts the process.
#pragma once

#include <stdexcept>
#include <string>

namespace tqlm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tqlm
