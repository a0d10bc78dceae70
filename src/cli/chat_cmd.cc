// `tqlm chat`: interactive multi-turn chat. Each turn renders the whole conversation with the
// model's chat format, keeps the KV cache for the longest token prefix it shares with what is
// already cached, and feeds only the rest.
//
// With --tools FILE.json (an array of OpenAI function tools) the template is given the tools,
// the reply is parsed for tool calls in the model family's convention while it streams, each
// call is shown as it is made, and the user types each tool's result; the conversation then
// goes on with the assistant's call and the tool message until the model answers in text.
//
// Input has line editing and history (libedit) on a terminal. Ctrl-C stops the reply being
// written (what was written stays in the conversation) and returns to the prompt; at the
// prompt, a second Ctrl-C in a row ends the chat. Lines starting with '/' are commands
// (/help lists them); an unknown one is an error, never sent to the model.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "cli/common_flags.h"
#include "cli/kv_auto.h"
#include "cli/line_reader.h"
#include "server/request.h"
#include "runtime/kv_policy.h"
#include "runtime/generate.h"
#include "chat/render.h"
#include "chat/tool_call_schema.h"
#include "chat/tool_calls.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct ChatFlags {
  ModelFlags model;
  runtime::GenerateParams gen;
  SpecFlags spec;
  std::string system;
  std::string tools_file;
};

nlohmann::ordered_json LoadTools(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("--tools: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return chat::ParseToolsJson(ss.str());
  } catch (const Error& e) {
    throw Error("--tools " + path + ": " + e.what());
  }
}

void Print(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// Prints what the tool-call parser releases: content as it streams, each call on its own line.
void PrintDeltas(const std::vector<chat::ToolCallDelta>& deltas, std::string* name) {
  for (const chat::ToolCallDelta& d : deltas) {
    if (d.index < 0) {
      Print(d.content);
    } else if (!d.name.empty()) {
      *name = d.name;
    } else {
      Print(fmt::format("\n[tool call] {} {}\n", *name, d.arguments));
    }
  }
}

// Input history across chats, beside the models in the cache directory.
std::string ChatHistoryFile() {
  const std::string model = DefaultModelPath();
  return model.substr(0, model.rfind("/models/")) + "/chat_history";
}

class ChatLoop {
 public:
  explicit ChatLoop(const ChatFlags& f)
      : f_(f),
        tools_(f.tools_file.empty() ? nlohmann::ordered_json() : LoadTools(f.tools_file)),
        lm_(LoadModel(f.model)),
        session_(*lm_.model, SessionWithKvAuto(f.model, lm_.model->info())),
        format_(chat::DetectToolCallFormat(lm_.tokenizer->vocab().chat_template,
                                                lm_.model->info().arch)) {
    SpecFlags spec = f.spec;
    draft_ = ResolveSpec(spec, f.model, lm_);
    gen_ = f.gen;
    gen_.spec = spec.params;
  }

  int Run() {
    WarnIfNoChatTemplate(lm_);
    if (!f_.system.empty()) messages_.push_back({"system", f_.system});
    std::fprintf(stderr, "chat with %s: /help lists the commands, Ctrl-C stops a reply, "
                 "Ctrl-D or /exit ends\n", lm_.model->info().name.c_str());
    if (!tools_.is_null()) {
      std::fprintf(stderr, "%zu tools from %s; tool calls read in the %s convention\n",
                   tools_.size(), f_.tools_file.c_str(),
                   std::string(chat::ToolCallFormatName(format_)).c_str());
    }
    bool interrupted_last = false;
    for (;;) {
      LineReader::Input in = reader_.Read("> ");
      if (in.interrupted) {
        if (interrupted_last) break;
        std::fprintf(stderr, "\n(Ctrl-C again or /exit to quit)\n");
        interrupted_last = true;
        continue;
      }
      interrupted_last = false;
      if (!in.line) break;  // end of input
      const std::string& line = *in.line;
      if (line.empty()) continue;
      if (line[0] == '/') {
        if (!Command(line)) break;
        continue;
      }
      const size_t before = messages_.size();
      messages_.push_back({"user", line});
      // The assistant may call tools several times before it answers in text.
      for (;;) {
        std::optional<chat::ToolCallParseResult> reply = Reply();
        if (!reply) {
          messages_.resize(before);  // the turn failed: forget it
          break;
        }
        if (reply->calls.empty() || stopped_) break;
        if (!ReadToolResults(reply->calls)) return 0;
      }
    }
    return 0;
  }

 private:
  // A '/' command; false ends the chat.
  bool Command(const std::string& line) {
    const size_t sp = line.find(' ');
    const std::string cmd = line.substr(0, sp);
    std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
    while (!arg.empty() && arg.back() == ' ') arg.pop_back();
    try {
      if (cmd == "/exit" || cmd == "/quit") return false;
      if (cmd == "/help") {
        std::fprintf(stderr,
                     "/help          this list\n"
                     "/reset         forget the conversation (the system message stays)\n"
                     "/save FILE     write the conversation as JSON ({\"messages\": [...]})\n"
                     "/load FILE     continue a conversation written by /save\n"
                     "/stats         context, KV cache and speed of the last reply\n"
                     "/exit          end (also Ctrl-D, or Ctrl-C twice at the prompt)\n");
      } else if (cmd == "/reset") {
        messages_.resize(f_.system.empty() ? 0 : 1);
        session_.Rewind(0);
        std::fprintf(stderr, "(conversation cleared)\n");
      } else if (cmd == "/save") {
        if (arg.empty()) throw Error("/save needs a file name");
        std::ofstream out(arg, std::ios::binary | std::ios::trunc);
        nlohmann::ordered_json j;
        j["messages"] = MessagesJson();
        out << j.dump(2) << "\n";
        if (!out.flush()) throw Error("/save: cannot write " + arg);
        std::fprintf(stderr, "(%zu messages written to %s)\n", messages_.size(), arg.c_str());
      } else if (cmd == "/load") {
        if (arg.empty()) throw Error("/load needs a file name");
        std::ifstream in(arg, std::ios::binary);
        if (!in) throw Error("/load: cannot read " + arg);
        std::stringstream ss;
        ss << in.rdbuf();
        server::RequestLimits limits;
        server::ChatRequest r;
        try {
          r = server::ParseChatRequest(ss.str(), limits);
        } catch (const std::exception& e) {
          throw Error("/load " + arg + ": " + e.what());
        }
        messages_ = std::move(r.messages);
        session_.Rewind(0);
        std::fprintf(stderr, "(%zu messages loaded from %s)\n", messages_.size(), arg.c_str());
      } else if (cmd == "/stats") {
        const kv::KvMemoryStats m = session_.cache().MemoryStats();
        std::fprintf(stderr,
                     "%zu messages, %zu tokens in context (of %d); KV cache %.2f MiB, f16 would be "
                     "%.2f MiB; last reply %d tokens at %.1f tokens/s\n",
                     messages_.size(), session_.history().size(), session_.n_ctx(),
                     m.bytes_used / 1048576.0, m.bytes_f16 / 1048576.0, last_tokens_,
                     last_rate_);
      } else {
        std::fprintf(stderr, "unknown command %s (/help lists them)\n", cmd.c_str());
      }
    } catch (const Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    }
    return true;
  }

  // The conversation in OpenAI's message format (tool call arguments as JSON text).
  nlohmann::ordered_json MessagesJson() const {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const chat::ChatMessage& m : messages_) {
      nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content}};
      if (!m.tool_calls.empty()) {
        nlohmann::ordered_json calls = nlohmann::ordered_json::array();
        for (const chat::ChatToolCall& c : m.tool_calls) {
          calls.push_back({{"id", c.id},
                           {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        }
        j["tool_calls"] = std::move(calls);
      }
      if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
      if (!m.name.empty()) j["name"] = m.name;
      list.push_back(std::move(j));
    }
    return list;
  }

  // Generates one assistant message and appends it to the conversation; nullopt on error.
  std::optional<chat::ToolCallParseResult> Reply() {
    const tokenizer::Tokenizer& tok = *lm_.tokenizer;
    const chat::ChatPrompt rendered = chat::RenderChat(tok, *lm_.chat, messages_, tools_);
    const std::vector<int>& ids = rendered.tokens;
    if (!head_measured_) {  // the cache is made at the first feed, with the head as sinks
      session_.SetToolsHead(rendered.tools_head_tokens);
      head_measured_ = true;
    }
    // Reuse the cached prefix; feed only what differs.
    const auto& hist = session_.history();
    size_t common = 0;
    while (common < hist.size() && common < ids.size() && hist[common] == ids[common]) ++common;
    if (common == ids.size()) --common;  // always feed at least one token to get logits
    session_.Rewind(int(common));
    const std::vector<int> fresh(ids.begin() + common, ids.end());

    chat::ToolCallStreamParser parser(format_);
    std::string call_name;
    runtime::GenerateCallbacks cb;
    if (tools_.is_null()) {
      cb.on_text = [](const std::string& piece) { Print(piece); };
    } else {
      cb.on_text = [&](const std::string& piece) { PrintDeltas(parser.Push(piece), &call_name); };
    }
    LineReader::TakeInterrupt();  // one pressed at the prompt is not for this reply
    cb.should_stop = [] { return LineReader::TakeInterrupt(); };
    runtime::GenerateResult r;
    try {
      r = runtime::Generate(session_, tok, fresh, gen_, cb,
                            draft_ ? draft_->session.get() : nullptr);
    } catch (const Error& e) {
      std::fprintf(stderr, "\nerror: %s\n", e.what());
      return std::nullopt;
    }
    chat::ToolCallParseResult parsed;
    if (tools_.is_null()) {
      parsed.content = r.text;
    } else {
      PrintDeltas(parser.Finish(), &call_name);
      parsed = parser.result();
    }
    std::printf("\n");
    stopped_ = r.finish_reason == "cancelled";
    if (stopped_) std::fprintf(stderr, "[stopped]\n");
    last_tokens_ = r.generated_tokens;
    last_rate_ = r.decode_seconds > 0 ? r.decode_tokens / r.decode_seconds : 0.0;
    for (const std::string& m : parsed.malformed) {
      std::fprintf(stderr, "[malformed tool call, kept as text: %s]\n", m.c_str());
    }
    std::fprintf(stderr, "[%d prompt tokens (%zu reused), %d generated, %.1f tokens/s]\n",
                 int(ids.size()), common, r.generated_tokens,
                 r.decode_seconds > 0 ? r.decode_tokens / r.decode_seconds : 0.0);
    chat::ChatMessage message{"assistant", parsed.calls.empty() ? r.text : parsed.content};
    message.tool_calls = parsed.calls;
    messages_.push_back(std::move(message));
    return parsed;
  }

  // Asks the user for each call's result and appends the tool messages; false at end of input.
  bool ReadToolResults(const std::vector<chat::ChatToolCall>& calls) {
    for (size_t i = 0; i < calls.size(); ++i) {
      if (calls.size() > 1) {
        std::fprintf(stderr, "result of %s (%zu/%zu)\n", calls[i].name.c_str(), i + 1, calls.size());
      }
      LineReader::Input in = reader_.Read("tool result> ");
      if (!in.line) return false;
      const std::string result = *in.line;
      chat::ChatMessage tool{"tool", result};
      tool.tool_call_id = calls[i].id;
      tool.name = calls[i].name;
      messages_.push_back(std::move(tool));
    }
    return true;
  }

  const ChatFlags& f_;
  LineReader reader_{ChatHistoryFile()};
  bool stopped_ = false;  // the last reply was stopped with Ctrl-C
  int last_tokens_ = 0;
  double last_rate_ = 0;
  nlohmann::ordered_json tools_;  // null without --tools
  bool head_measured_ = false;
  LoadedModel lm_;
  runtime::Session session_;
  chat::ToolCallFormat format_;
  std::vector<chat::ChatMessage> messages_;
  std::unique_ptr<DraftModel> draft_;  // with --spec draft
  runtime::GenerateParams gen_;        // f_.gen with the speculation settled
};

CommandRegistration reg("chat", "interactive multi-turn chat", [](CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  f->gen.max_tokens = 512;
  f->model.session.kv = runtime::DefaultKvPolicy();  // measured default, see kv_policy.h
  AddModelFlags(app, f->model);
  AddSamplerFlags(app, f->gen.sampler);
  AddSpecFlags(app, f->spec);
  app.add_option("-n,--n-predict", f->gen.max_tokens, "max tokens per reply (-1: context full)")
      ->envname("TQLM_N_PREDICT")->capture_default_str()->check(CLI::Range(-1, 1 << 24));
  app.add_option("--system,--system-prompt", f->system, "system message");
  app.add_option("--tools", f->tools_file,
                 "JSON file with an array of OpenAI function tools; the model may call them and "
                 "you type each result");
  return [f] { return ChatLoop(*f).Run(); };
});

}  // namespace
}  // namespace tqlm::cli
