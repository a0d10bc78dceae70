// llama.cpp's command lines, read with llama.cpp's meaning: its multi-letter single-dash flags
// (-ctk, -ctv, -np, -fa, -sys, -ngl, -cnv …) become tqlm's long flags before CLI11 parses
// (which would otherwise read "-ctk f16" as "-c tk f16"), llama.cpp flags tqlm has no
// equivalent for are errors that say so, and any other multi-letter single-dash word is an
// unknown-flag error instead of a cluster of short flags.
#pragma once

#include <string>
#include <vector>

namespace tqlm::cli {

// args[0] is the program, args[1] the subcommand. Throws tqlm::Error naming the flag.
std::vector<std::string> TranslateLlamaCppFlags(std::vector<std::string> args);

}  // namespace tqlm::cli
