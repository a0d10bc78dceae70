// Stop strings end generation; text is streamed only once no stop string can begin in it.
#pragma once

#include <string>
#include <vector>

namespace tqlm::runtime {

// How many leading bytes of `text` can be emitted without risking that a stop string starts
// in what is held back (its longest suffix that is a proper prefix of a stop string).
size_t StopSafePrefix(const std::string& text, const std::vector<std::string>& stop);

}  // namespace tqlm::runtime
