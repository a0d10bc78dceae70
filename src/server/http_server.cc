#include "server/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <ctime>
#include <random>

#include "server/chat_page.h"
#include "server/client_socket.h"
#include "server/openai_json.h"
#include "chat/render.h"
#include "chat/prompt_head.h"
#include "chat/tool_calls.h"

namespace tqlm::server {
namespace {

using Clock = std::chrono::steady_clock;
using runtime::StreamEvent;

ApiError Unavailable(const std::string& message) {
  return ApiError(503, "server_error", message, "", "service_unavailable");
}

// How often a waiting handler looks whether its client is still there.
constexpr std::chrono::milliseconds kClientCheck{100};

// The request's connection, to notice a client that hangs up before its answer is ready.
std::shared_ptr<ClientSocket> ClientOf(const httplib::Request& req) {
  return std::make_shared<ClientSocket>(req.local_addr, req.local_port, req.remote_addr,
                                        req.remote_port);
}

// One line on stderr per request when it ends: id, status, prompt tokens (and how many came
// from the prompt cache), generated tokens, time to the first piece, decode rate, reason.
struct RequestLog {
  std::string id;
  bool enabled = true;
  Clock::time_point start = Clock::now(), first{};
  bool logged = false;

  void Text() {
    if (first == Clock::time_point{}) first = Clock::now();
  }
  void Done(int status, const StreamEvent* done, const std::string& what) {
    if (logged || !enabled) return;
    logged = true;
    const auto now = Clock::now();
    const double ttft = first == Clock::time_point{}
                            ? -1 : std::chrono::duration<double>(first - start).count();
    std::string line = fmt::format("[serve] {} {}", id, status);
    if (done) {
      const double dt = std::chrono::duration<double>(now - (ttft < 0 ? start : first)).count();
      const int steps = std::max(0, done->completion_tokens - 1);
      line += fmt::format(" prompt {} (cached {}) + {} tokens", done->prompt_tokens,
                          done->cached_tokens, done->completion_tokens);
      if (ttft >= 0) line += fmt::format(", first token {:.2f} s", ttft);
      if (steps > 0 && dt > 0) line += fmt::format(", {:.1f} tok/s", steps / dt);
    }
    line += ", " + what;
    std::fprintf(stderr, "%s\n", line.c_str());
  }
};

// Relays one request's stream to a chunked response as server-sent events. The callbacks turn
// scheduler events into SSE text in the endpoint's format.
struct SseRelay {
  std::shared_ptr<runtime::RequestStream> stream;
  std::shared_ptr<ClientSocket> client;
  std::shared_ptr<RequestLog> log;
  std::function<std::string()> on_start;                      // before the first piece
  std::function<std::string(const StreamEvent&)> on_text;     // a piece of output
  std::function<std::string(const StreamEvent&)> on_done;     // kDone: last chunks
  bool started = false;
  bool finished = false;
  Clock::time_point last_write = Clock::now();

  // One call of httplib's content provider: waits briefly for events and writes them. A failed
  // write means the client went away: the request is cancelled, its slot freed next step.
  bool Pump(httplib::DataSink& sink) {
    if (finished) {
      sink.done();
      return true;
    }
    std::string out;
    if (!started) {
      started = true;
      if (on_start) out += on_start();
    }
    // A client that hung up while nothing was written (queued, long prefill) is noticed here.
    if (client && client->Gone()) {
      stream->Cancel();
      log->Done(499, nullptr, "client gone");
      return false;
    }
    std::optional<StreamEvent> ev = stream->Next(kClientCheck);
    while (ev) {
      if (ev->kind == StreamEvent::Kind::kText) {
        log->Text();
        out += on_text(*ev);
      } else if (ev->kind == StreamEvent::Kind::kDone) {
        out += on_done(*ev) + SseDone();
        finished = true;
        log->Done(200, &*ev, ev->finish_reason + ", streamed");
      } else {
        const ApiError e = ev->unavailable ? Unavailable(ev->text)
                                           : ApiError(500, "server_error", ev->text);
        out += "data: " + ErrorBody(e) + "\n\n" + SseDone();
        finished = true;
        log->Done(e.status(), nullptr, ev->text);
      }
      if (finished) break;
      ev = stream->Next(std::chrono::milliseconds(0));  // drain what is already there
    }
    // A comment line now and then, so that a client that left during a long prefill is noticed.
    if (out.empty() && Clock::now() - last_write > std::chrono::seconds(1)) out = ": keep-alive\n\n";
    if (!out.empty()) {
      if (!sink.write(out.data(), out.size())) {
        stream->Cancel();
        log->Done(499, nullptr, "client gone");
        return false;
      }
      last_write = Clock::now();
    }
    if (finished) sink.done();
    return true;
  }
};

// Waits for the whole answer of a non-streaming request. A client that hangs up meanwhile
// cancels the request at once (its slot is freed at the scheduler's next step) instead of
// letting it decode to max_tokens for nobody; the handler then answers 499 (nginx's "client
// closed request") to the closed connection, which counts it in /metrics.
struct Collected {
  std::string text;
  std::vector<runtime::TokenLogprob> logprobs;
  StreamEvent done;
};
Collected Collect(runtime::RequestStream& stream, const ClientSocket& client, RequestLog& log) {
  Collected c;
  auto checked = Clock::now();
  for (;;) {
    std::optional<StreamEvent> ev = stream.Next(kClientCheck);
    if (!ev || Clock::now() - checked >= kClientCheck) {
      checked = Clock::now();
      if (client.Gone()) {
        stream.Cancel();
        log.Done(499, nullptr, "client gone");
        throw ApiError(499, "invalid_request_error", "the client closed the connection");
      }
    }
    if (!ev) continue;
    if (ev->kind == StreamEvent::Kind::kText) {
      log.Text();
      c.text += ev->text;
      for (auto& lp : ev->logprobs) c.logprobs.push_back(std::move(lp));
    } else if (ev->kind == StreamEvent::Kind::kDone) {
      c.done = std::move(*ev);
      log.Done(200, &c.done, c.done.finish_reason);
      return c;
    } else {
      const ApiError e = ev->unavailable ? Unavailable(ev->text)
                                         : ApiError(500, "server_error", ev->text);
      log.Done(e.status(), nullptr, ev->text);
      throw e;
    }
  }
}

Usage UsageOf(const StreamEvent& done) {
  Usage u{done.prompt_tokens, done.completion_tokens, done.cached_tokens};
  u.kv_bytes = done.kv_bytes;
  u.kv_bytes_f16 = done.kv_bytes_f16;
  if (done.decode_seconds > 0)
    u.decode_tokens_per_s = (done.completion_tokens - 1) / done.decode_seconds;
  u.spec_proposed = done.spec.proposed;
  u.spec_accepted = done.spec.accepted;
  return u;
}

std::vector<LogprobToken> LogprobTokens(const tokenizer::Tokenizer& tok,
                                        const std::vector<runtime::TokenLogprob>& in) {
  std::vector<LogprobToken> out;
  for (const runtime::TokenLogprob& t : in) {
    LogprobToken lt;
    lt.token = tok.Decode(std::span<const int>(&t.token, 1), true);
    lt.logprob = t.logprob;
    for (const auto& [id, lp] : t.top) lt.top.emplace_back(tok.Decode(std::span<const int>(&id, 1), true), lp);
    out.push_back(std::move(lt));
  }
  return out;
}

}  // namespace

HttpServer::HttpServer(ServerOptions options, runtime::Scheduler& scheduler, ChatSetup chat)
    : options_(std::move(options)),
      scheduler_(scheduler),
      chat_(std::move(chat)),
      http_(std::make_unique<httplib::Server>()),
      created_(int64_t(std::time(nullptr))) {
  const int threads = std::max(2, options_.http_threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_keep_alive_max_count(1000);
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, with which a second server on
  // the same port binds too and the kernel splits the requests between them silently.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
  });
  Routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::Bind() {
  int port = options_.port;
  if (port < 0 || port > 65535)
    throw Error(fmt::format("port {} is out of range (1-65535, or 0 for any free port)", port));
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
  } else if (!http_->bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port <= 0)
    throw Error(fmt::format("cannot listen on {}:{} (address in use or not available)",
                            options_.host, options_.port));
  return port;
}

void HttpServer::Listen() { http_->listen_after_bind(); }

void HttpServer::Stop() { http_->stop(); }

bool HttpServer::Authorized(const httplib::Request& req) const {
  if (options_.api_key.empty()) return true;
  const std::string want = "Bearer " + options_.api_key;
  const std::string got = req.get_header_value("Authorization");
  // Compare every byte, so the time taken does not tell how much of the key matched.
  unsigned diff = got.size() != want.size() ? 1u : 0u;
  for (size_t i = 0; i < got.size(); ++i) diff |= unsigned(uint8_t(got[i]) ^ uint8_t(want[i % want.size()]));
  return diff == 0;
}

void HttpServer::SendError(httplib::Response& res, const ApiError& e, const std::string& endpoint) {
  res.status = e.status();
  res.set_content(ErrorBody(e), "application/json");
  (void)endpoint;
}

void HttpServer::Handle(const std::string& endpoint, const httplib::Request& req,
                        httplib::Response& res, const std::function<void()>& handler) {
  try {
    if (!Authorized(req))
      throw ApiError(401, "invalid_request_error", "missing or wrong API key (Authorization: Bearer ...)",
                     "", "invalid_api_key");
    if (shutting_down_) throw Unavailable("the server is shutting down");
    handler();
  } catch (const ApiError& e) {
    SendError(res, e, endpoint);
  } catch (const runtime::Overloaded& e) {
    if (e.shutting_down()) {
      SendError(res, Unavailable(e.what()), endpoint);
    } else {
      SendError(res, ApiError(429, "rate_limit_error", e.what(), "", "overloaded"), endpoint);
      res.set_header("Retry-After", "1");
    }
  } catch (const Error& e) {
    SendError(res, BadRequest(e.what()), endpoint);
  } catch (const std::exception& e) {
    SendError(res, ApiError(500, "server_error", fmt::format("internal error: {}", e.what())), endpoint);
  }
  metrics_.CountRequest(endpoint, res.status);
}

void HttpServer::Routes() {
  http_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Handle("/v1/chat/completions", req, res, [&] { Chat(req, res); });
  });
  http_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Handle("/v1/completions", req, res, [&] { Completion(req, res); });
  });
  http_->Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    Handle("/v1/models", req, res, [&] {
      res.set_content(Dump(ModelList({options_.model_id}, created_)), "application/json");
    });
  });
  http_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPage, "text/html; charset=utf-8");
  });
  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (shutting_down_) {
      res.status = 503;
      res.set_content(R"({"status":"shutting down"})", "application/json");
    } else {
      res.set_content(R"({"status":"ok"})", "application/json");
    }
    metrics_.CountRequest("/health", res.status);
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.Render(scheduler_.Stats()), "text/plain; version=0.0.4");
    metrics_.CountRequest("/metrics", res.status);
  });
  // Anything else (an unknown path, a body over the limit): OpenAI's error format.
  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message;
    switch (res.status) {
      case 404: message = fmt::format("no such endpoint: {} {}", req.method, req.path); break;
      case 405: message = fmt::format("method {} not allowed on {}", req.method, req.path); break;
      case 413: message = "the request body is larger than the server accepts"; break;
      default: message = fmt::format("{} {}: HTTP status {}", req.method, req.path, res.status);
    }
    const char* type = res.status < 500 ? "invalid_request_error" : "server_error";
    res.set_content(ErrorBody(ApiError(res.status, type, message)), "application/json");
  });
}

std::string HttpServer::NewId(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:x}{:012x}", prefix, counter_.fetch_add(1), rng() & 0xFFFFFFFFFFFFull);
}

std::shared_ptr<runtime::RequestStream> HttpServer::Submit(std::vector<int> prompt,
                                                           const SamplingFields& sampling,
                                                           int tools_head_tokens) {
  runtime::GenerationRequest request;
  request.prompt = std::move(prompt);
  request.tools_head_tokens = tools_head_tokens;
  const uint64_t n = counter_.load();
  request.params = ToGenerateParams(sampling, options_.sampler, options_.default_max_tokens,
                                    options_.sampler.seed + n * 0x9E3779B97F4A7C15ull);
  request.params.spec = options_.spec;
  if (int(request.prompt.size()) >= scheduler_.n_ctx()) {
    const int over = int(request.prompt.size()) - scheduler_.n_ctx() + 1;
    throw ApiError(400, "invalid_request_error",
                   fmt::format("the prompt is {} tokens but the context holds {} (including at "
                               "least one generated token): {} tokens over",
                               request.prompt.size(), scheduler_.n_ctx(), over),
                   "messages", "context_length_exceeded");
  }
  return scheduler_.Submit(std::move(request));
}

namespace {
void CheckModel(const std::string& requested, const std::string& served, bool strict) {
  if (strict && !requested.empty() && requested != served)
    throw ApiError(404, "invalid_request_error",
                   fmt::format("the model '{}' does not exist; this server serves '{}'", requested, served),
                   "model", "model_not_found");
}
}  // namespace

void HttpServer::Chat(const httplib::Request& req, httplib::Response& res) {
  ChatRequest r = ParseChatRequest(req.body, options_.limits);
  CheckModel(r.model, options_.model_id, options_.strict_model_name);
  // With tools, the answer is parsed for calls in the model family's own convention.
  const bool tools = !r.tools.is_null();
  const chat::ToolCallFormat format =
      chat::DetectToolCallFormat(chat_.chat_template, chat_.arch);
  // tool_choice required / a named function: the answer starts as a call (chat/tool_choice.h).
  // "required" with a single tool is a call to that tool; with several the model names one
  // (nothing stops it from naming one that does not exist: there is no grammar).
  chat::ForcedCall force;
  force.force =
      tools && (r.tool_choice == ToolChoice::kRequired || r.tool_choice == ToolChoice::kFunction);
  force.function = r.tool_choice_name;
  force.format = format;
  chat::ChatPrompt rendered;
  try {
    rendered = chat::RenderChat(*chat_.tokenizer, *chat_.formatter, r.messages, r.tools, force);
  } catch (const Error& e) {
    throw BadRequest(fmt::format("the chat template failed on these messages: {}", e.what()), "messages");
  }
  const std::string forced = rendered.forced;
  const int tools_head = rendered.tools_head_tokens;  // kept full precision by the default KV
  std::vector<int> prompt = std::move(rendered.tokens);
  auto client = ClientOf(req);
  auto stream = Submit(std::move(prompt), r.sampling, tools_head);
  ResponseMeta meta{NewId("chatcmpl"), int64_t(std::time(nullptr)), options_.model_id};
  auto log = std::make_shared<RequestLog>();
  log->id = meta.id;
  log->enabled = options_.log_requests;

  if (!r.stream) {
    Collected c = Collect(*stream, *client, *log);
    std::string content = forced + c.text;
    std::vector<chat::ChatToolCall> calls;
    if (tools) {
      chat::ToolCallParseResult parsed = chat::ParseToolCalls(format, content);
      content = std::move(parsed.content);
      calls = std::move(parsed.calls);
    }
    const std::string finish = calls.empty() ? c.done.finish_reason : "tool_calls";
    Json j = ChatCompletion(meta, content, calls, finish, UsageOf(c.done));
    if (r.sampling.top_logprobs)
      j["choices"][0]["logprobs"] = ChatLogprobs(LogprobTokens(*chat_.tokenizer, c.logprobs));
    res.set_content(Dump(j), "application/json");
    return;
  }
  auto relay = std::make_shared<SseRelay>();
  relay->stream = stream;
  relay->client = client;
  relay->log = log;
  relay->on_start = [meta] { return SseData(ChatChunk(meta, {{"role", "assistant"}, {"content", ""}})); };
  if (!tools) {
    const tokenizer::Tokenizer* tok = chat_.tokenizer;
    const bool logprobs = r.sampling.top_logprobs.has_value();
    relay->on_text = [meta, tok, logprobs](const StreamEvent& ev) {
      Json chunk = ChatChunk(meta, {{"content", ev.text}});
      if (logprobs) chunk["choices"][0]["logprobs"] = ChatLogprobs(LogprobTokens(*tok, ev.logprobs));
      return SseData(chunk);
    };
    relay->on_done = [meta, usage = r.include_usage](const StreamEvent& done) {
      std::string out = SseData(ChatChunk(meta, Json::object(), done.finish_reason));
      if (usage) out += SseData(ChatUsageChunk(meta, UsageOf(done)));
      return out;
    };
  } else {
    // Called on the connection's thread only, one call at a time: the parser needs no lock.
    auto parser = std::make_shared<chat::ToolCallStreamParser>(format);
    auto encode = [meta](const std::vector<chat::ToolCallDelta>& deltas) {
      std::string out;
      for (const auto& d : deltas) {
        if (d.index < 0) {
          if (!d.content.empty()) out += SseData(ChatChunk(meta, {{"content", d.content}}));
        } else {
          out += SseData(ChatChunk(meta, ToolCallDelta(d.index, d.id, d.name, d.arguments)));
        }
      }
      return out;
    };
    // The forced call start is the first piece of the answer: it opens a call, so the parser
    // holds it back and releases nothing until the call is complete.
    const std::string first = encode(parser->Push(forced));
    relay->on_start = [meta, first] {
      return SseData(ChatChunk(meta, {{"role", "assistant"}, {"content", ""}})) + first;
    };
    relay->on_text = [parser, encode](const StreamEvent& ev) { return encode(parser->Push(ev.text)); };
    relay->on_done = [meta, parser, encode, usage = r.include_usage](const StreamEvent& done) {
      std::string out = encode(parser->Finish());
      const std::string finish = parser->result().calls.empty() ? done.finish_reason : "tool_calls";
      out += SseData(ChatChunk(meta, Json::object(), finish));
      if (usage) out += SseData(ChatUsageChunk(meta, UsageOf(done)));
      return out;
    };
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [relay](size_t, httplib::DataSink& sink) { return relay->Pump(sink); },
      [relay](bool) { relay->stream->Cancel(); });
}

void HttpServer::Completion(const httplib::Request& req, httplib::Response& res) {
  CompletionRequest r = ParseCompletionRequest(req.body, options_.limits);
  CheckModel(r.model, options_.model_id, options_.strict_model_name);
  std::vector<int> prompt = chat_.tokenizer->Encode(r.prompt, true, false);
  auto client = ClientOf(req);
  auto stream = Submit(std::move(prompt), r.sampling);
  ResponseMeta meta{NewId("cmpl"), int64_t(std::time(nullptr)), options_.model_id};
  auto log = std::make_shared<RequestLog>();
  log->id = meta.id;
  log->enabled = options_.log_requests;
  if (!r.stream) {
    Collected c = Collect(*stream, *client, *log);
    Json j = TextCompletion(meta, c.text, c.done.finish_reason, UsageOf(c.done));
    if (r.sampling.top_logprobs)
      j["choices"][0]["logprobs"] = TextLogprobs(LogprobTokens(*chat_.tokenizer, c.logprobs), 0);
    res.set_content(Dump(j), "application/json");
    return;
  }
  auto relay = std::make_shared<SseRelay>();
  relay->stream = stream;
  relay->client = client;
  relay->log = log;
  const tokenizer::Tokenizer* tok = chat_.tokenizer;
  const bool logprobs = r.sampling.top_logprobs.has_value();
  auto offset = std::make_shared<size_t>(0);
  relay->on_text = [meta, tok, logprobs, offset](const StreamEvent& ev) {
    Json chunk = TextChunk(meta, ev.text);
    if (logprobs) {
      const std::vector<LogprobToken> t = LogprobTokens(*tok, ev.logprobs);
      chunk["choices"][0]["logprobs"] = TextLogprobs(t, *offset);
      for (const LogprobToken& x : t) *offset += x.token.size();
    }
    return SseData(chunk);
  };
  relay->on_done = [meta, usage = r.include_usage](const StreamEvent& done) {
    std::string out = SseData(TextChunk(meta, "", done.finish_reason));
    if (usage) out += SseData(TextUsageChunk(meta, UsageOf(done)));
    return out;
  };
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [relay](size_t, httplib::DataSink& sink) { return relay->Pump(sink); },
      [relay](bool) { relay->stream->Cancel(); });
}

}  // namespace tqlm::server
