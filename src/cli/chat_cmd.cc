// `tqlm chat`: interactive multi-turn chat. Each turn renders the whole conversation with the
// model's chat format, keeps the KV cache for the longest token prefix it shares with what is
// already cached, and feeds only the rest.
//
// With --tools FILE.json (an array of OpenAI function tools) the template is given the tools,
// the reply is parsed for tool calls in the model family's convention while it streams, each
// call is shown as it is made, and the user types each tool's result; the conversation then
// goes on with the assistant's call and the tool message until the model answers in text.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "cli/common_flags.h"
#include "runtime/kv_policy.h"
#include "runtime/generate.h"
#include "tokenizer/prompt_head.h"
#include "tokenizer/tool_call_schema.h"
#include "tokenizer/tool_calls.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct ChatFlags {
  ModelFlags model;
  runtime::GenerateParams gen;
  std::string system;
  std::string tools_file;
};

nlohmann::ordered_json LoadTools(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("--tools: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return tokenizer::ParseToolsJson(ss.str());
  } catch (const Error& e) {
    throw Error("--tools " + path + ": " + e.what());
  }
}

void Print(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// Prints what the tool-call parser releases: content as it streams, each call on its own line.
void PrintDeltas(const std::vector<tokenizer::ToolCallDelta>& deltas, std::string* name) {
  for (const tokenizer::ToolCallDelta& d : deltas) {
    if (d.index < 0) {
      Print(d.content);
    } else if (!d.name.empty()) {
      *name = d.name;
    } else {
      Print(fmt::format("\n[tool call] {} {}\n", *name, d.arguments));
    }
  }
}

class ChatLoop {
 public:
  explicit ChatLoop(const ChatFlags& f)
      : f_(f),
        tools_(f.tools_file.empty() ? nlohmann::ordered_json() : LoadTools(f.tools_file)),
        lm_(LoadModel(f.model)),
        session_(*lm_.model, f.model.session),
        format_(tokenizer::DetectToolCallFormat(lm_.tokenizer->vocab().chat_template,
                                                lm_.model->info().arch)) {}

  int Run() {
    if (!f_.system.empty()) messages_.push_back({"system", f_.system});
    std::fprintf(stderr, "chat with %s — /reset clears the conversation, /exit or Ctrl-D ends\n",
                 lm_.model->info().name.c_str());
    if (!tools_.is_null()) {
      std::fprintf(stderr, "%zu tools from %s; tool calls read in the %s convention\n",
                   tools_.size(), f_.tools_file.c_str(),
                   std::string(tokenizer::ToolCallFormatName(format_)).c_str());
    }
    std::string line;
    for (;;) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line.empty()) continue;
      if (line == "/reset") {
        messages_.resize(f_.system.empty() ? 0 : 1);
        session_.Rewind(0);
        continue;
      }
      const size_t before = messages_.size();
      messages_.push_back({"user", line});
      // The assistant may call tools several times before it answers in text.
      for (;;) {
        std::optional<tokenizer::ToolCallParseResult> reply = Reply();
        if (!reply) {
          messages_.resize(before);  // the turn failed: forget it
          break;
        }
        if (reply->calls.empty()) break;
        if (!ReadToolResults(reply->calls)) return 0;
      }
    }
    return 0;
  }

 private:
  // Generates one assistant message and appends it to the conversation; nullopt on error.
  std::optional<tokenizer::ToolCallParseResult> Reply() {
    const tokenizer::Tokenizer& tok = *lm_.tokenizer;
    const std::string prompt = tools_.is_null() ? lm_.chat->Format(messages_, true)
                                                : lm_.chat->FormatWithTools(messages_, tools_, true);
    const std::vector<int> ids = tok.EncodeChat(prompt);
    if (!head_measured_) {  // the cache is made at the first feed, with the head as sinks
      session_.SetToolsHead(tokenizer::ToolsHeadTokens(tok, *lm_.chat, messages_, tools_));
      head_measured_ = true;
    }
    // Reuse the cached prefix; feed only what differs.
    const auto& hist = session_.history();
    size_t common = 0;
    while (common < hist.size() && common < ids.size() && hist[common] == ids[common]) ++common;
    if (common == ids.size()) --common;  // always feed at least one token to get logits
    session_.Rewind(int(common));
    const std::vector<int> fresh(ids.begin() + common, ids.end());

    tokenizer::ToolCallStreamParser parser(format_);
    std::string call_name;
    runtime::GenerateCallbacks cb;
    if (tools_.is_null()) {
      cb.on_text = [](const std::string& piece) { Print(piece); };
    } else {
      cb.on_text = [&](const std::string& piece) { PrintDeltas(parser.Push(piece), &call_name); };
    }
    runtime::GenerateResult r;
    try {
      r = runtime::Generate(session_, tok, fresh, f_.gen, cb);
    } catch (const Error& e) {
      std::fprintf(stderr, "\nerror: %s\n", e.what());
      return std::nullopt;
    }
    tokenizer::ToolCallParseResult parsed;
    if (tools_.is_null()) {
      parsed.content = r.text;
    } else {
      PrintDeltas(parser.Finish(), &call_name);
      parsed = parser.result();
    }
    std::printf("\n");
    for (const std::string& m : parsed.malformed) {
      std::fprintf(stderr, "[malformed tool call, kept as text: %s]\n", m.c_str());
    }
    std::fprintf(stderr, "[%d prompt tokens (%zu reused), %d generated, %.1f tokens/s]\n",
                 int(ids.size()), common, r.generated_tokens,
                 r.decode_seconds > 0 ? r.decode_forwards / r.decode_seconds : 0.0);
    tokenizer::ChatMessage message{"assistant", parsed.calls.empty() ? r.text : parsed.content};
    message.tool_calls = parsed.calls;
    messages_.push_back(std::move(message));
    return parsed;
  }

  // Asks the user for each call's result and appends the tool messages; false at end of input.
  bool ReadToolResults(const std::vector<tokenizer::ChatToolCall>& calls) {
    for (size_t i = 0; i < calls.size(); ++i) {
      if (calls.size() > 1) {
        std::fprintf(stderr, "result of %s (%zu/%zu)\n", calls[i].name.c_str(), i + 1, calls.size());
      }
      std::fprintf(stderr, "tool result> ");
      std::string result;
      if (!std::getline(std::cin, result)) return false;
      tokenizer::ChatMessage tool{"tool", result};
      tool.tool_call_id = calls[i].id;
      tool.name = calls[i].name;
      messages_.push_back(std::move(tool));
    }
    return true;
  }

  const ChatFlags& f_;
  nlohmann::ordered_json tools_;  // null without --tools
  bool head_measured_ = false;
  LoadedModel lm_;
  runtime::Session session_;
  tokenizer::ToolCallFormat format_;
  std::vector<tokenizer::ChatMessage> messages_;
};

CommandRegistration reg("chat", "interactive multi-turn chat", [](CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  f->gen.max_tokens = 512;
  f->model.session.kv = runtime::DefaultKvPolicy();  // measured default, see kv_policy.h
  AddModelFlags(app, f->model);
  AddSamplerFlags(app, f->gen.sampler);
  app.add_option("-n,--n-predict", f->gen.max_tokens, "max tokens per reply")
      ->envname("TQLM_N_PREDICT")->capture_default_str();
  app.add_option("--system", f->system, "system message");
  app.add_option("--tools", f->tools_file,
                 "JSON file with an array of OpenAI function tools; the model may call them and "
                 "you type each result");
  return [f] { return ChatLoop(*f).Run(); };
});

}  // namespace
}  // namespace tqlm::cli
