#include "chat/chat_builtin.h"

#include <algorithm>

namespace tqlm::chat {

namespace {

// Gemma's turn format: the assistant's role is "model", a system message has no turn of its
// own but opens the first user turn, and every turn ends with <end_of_turn> and a newline.
constexpr std::string_view kGemmaTemplate = R"({{- bos_token -}}
{%- set first_prefix = '' -%}
{%- set turns = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set first_prefix = messages[0]['content'] + '\n\n' -%}
  {%- set turns = messages[1:] -%}
{%- endif -%}
{%- for m in turns -%}
  {%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}
  {{- '<start_of_turn>' + role + '\n' + (first_prefix if loop.first else '') -}}
  {{- m['content'] | trim -}}
  {{- '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<start_of_turn>model\n' -}}
{%- endif -%})";

bool HasToken(const tokenizer::VocabData& vocab, std::string_view text) {
  return std::find(vocab.tokens.begin(), vocab.tokens.end(), text) != vocab.tokens.end();
}

}  // namespace

std::string_view BuiltinChatTemplate(const tokenizer::VocabData& vocab) {
  if (HasToken(vocab, "<start_of_turn>") && HasToken(vocab, "<end_of_turn>")) {
    return kGemmaTemplate;
  }
  return {};
}

}  // namespace tqlm::chat
