// The HTTP front end of `tqlm serve`: OpenAI's endpoints over cpp-httplib.
//   POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics
// Handlers parse and validate the request, render the chat template and tokenize, then hand the
// tokens to the Scheduler and relay its stream (as one JSON answer or as server-sent events).
// They never run the model. Every error is OpenAI's error JSON with its status code.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/scheduler.h"
#include "server/metrics.h"
#include "server/request.h"
#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace tqlm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see Bind)
  std::string api_key;             // non-empty: /v1/* need "Authorization: Bearer <key>"
  std::string model_id;            // the name /v1/models lists and responses report
  // Requests naming another model get 404; by default any name is served (as llama-server
  // does), so clients with a fixed model name work.
  bool strict_model_name = false;
  bool log_requests = true;        // one line on stderr per finished request
  size_t max_body_bytes = size_t(1) << 20;
  RequestLimits limits;
  int default_max_tokens = 256;    // when a request gives none
  runtime::SamplerParams sampler;  // defaults for unset sampling fields
  runtime::SpecParams spec;        // speculation for every request (--spec ngram)
  int http_threads = 8;
};

// What the chat endpoint needs to know about the model's conventions.
struct ChatSetup {
  const tokenizer::Tokenizer* tokenizer = nullptr;
  const chat::ChatFormatter* formatter = nullptr;
  std::string chat_template;  // tokenizer.chat_template ("" when absent), for tool-call parsing
  std::string arch;           // general.architecture
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, runtime::Scheduler& scheduler, ChatSetup chat);
  ~HttpServer();

  // Binds host:port; returns the port. Throws tqlm::Error when it cannot.
  int Bind();
  // Serves until Stop(). Blocks.
  void Listen();
  // New requests get 503 from now on (health too); requests in flight continue.
  void BeginShutdown() { shutting_down_ = true; }
  // Closes the listening socket and returns once the handlers in flight have ended.
  void Stop();

 private:
  void Routes();
  bool Authorized(const httplib::Request& req) const;
  void Chat(const httplib::Request& req, httplib::Response& res);
  void Completion(const httplib::Request& req, httplib::Response& res);
  void SendError(httplib::Response& res, const ApiError& e, const std::string& endpoint);
  // Runs `handler` with the checks every endpoint shares (API key, shutdown) and turns its
  // exceptions into error responses; counts the answer in /metrics.
  void Handle(const std::string& endpoint, const httplib::Request& req, httplib::Response& res,
              const std::function<void()>& handler);
  std::shared_ptr<runtime::RequestStream> Submit(std::vector<int> prompt,
                                                 const SamplingFields& sampling,
                                                 int tools_head_tokens = 0);
  std::string NewId(const char* prefix);

  ServerOptions options_;
  runtime::Scheduler& scheduler_;
  ChatSetup chat_;
  Metrics metrics_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> counter_{0};
  int64_t created_;
};

}  // namespace tqlm::server
