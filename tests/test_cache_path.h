// Where the setup installs models and the corpus ($TQLM_CACHE, else ~/.cache/tqlm), for tests
// that use them and skip when they are absent.
#pragma once

#include <cstdlib>
#include <string>

namespace tqlm::testing {

inline std::string CachePath(const std::string& rel) {
  const char* c = std::getenv("TQLM_CACHE");
  const char* home = std::getenv("HOME");
  return (c ? std::string(c) : std::string(home ? home : ".") + "/.cache/tqlm") + "/" + rel;
}

}  // namespace tqlm::testing
