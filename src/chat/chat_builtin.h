// Built-in chat templates for model families whose GGUF files may ship without
// `tokenizer.chat_template` (the Gemma 3 270M GGUF has none). Chosen by the special tokens the
// vocabulary holds; each is a Jinja template rendered like a model's own.
#pragma once

#include <string_view>

#include "tokenizer/vocab.h"

namespace tqlm::chat {

// The family's turn format as Jinja source, or "" when the vocabulary matches none (callers
// then use ChatML).
std::string_view BuiltinChatTemplate(const tokenizer::VocabData& vocab);

}  // namespace tqlm::chat
