#include "runtime/stop_strings.h"

#include <algorithm>

namespace tqlm::runtime {

size_t StopSafePrefix(const std::string& text, const std::vector<std::string>& stop) {
  size_t hold = 0;
  for (const std::string& s : stop) {
    if (s.empty()) continue;
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  return text.size() - hold;
}

}  // namespace tqlm::runtime
