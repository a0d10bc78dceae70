// Reading a model's tokenizer from GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
#pragma once

#include "tokenizer/vocab.h"

namespace tqlm::model {
class GgufFile;
}

namespace tqlm::tokenizer {

// Fills VocabData from the file's metadata. Missing special-token ids get llama.cpp's defaults
// for the model kind. Throws tqlm::Error naming the key when a required key is missing or has
// the wrong type, or when an array's length disagrees with the token count.
VocabData LoadVocab(const model::GgufFile& file);

}  // namespace tqlm::tokenizer
