// `tqlm serve`: an OpenAI-compatible HTTP server (src/server) over the continuous-batching
// scheduler (src/runtime/scheduler.h), with the same model, KV-cache and sampling flags as
// `tqlm run`. SIGINT/SIGTERM stop it gracefully: new requests get 503, running ones may finish
// for --shutdown-grace seconds, then are cancelled.
#include <fmt/format.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/command.h"
#include "cli/common_flags.h"
#include "cli/eval_cmds.h"
#include "cli/kv_auto.h"
#include "runtime/kv_policy.h"
#include "runtime/scheduler.h"
#include "server/http_server.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct ServeFlags {
  ModelFlags model;
  runtime::SamplerParams sampler;
  SpecFlags spec;
  server::ServerOptions server;
  int parallel = 4;
  int max_queue = 64;
  std::string prompt_cache = "256MiB";
  std::string spec_pool = "16MiB";
  std::string max_body = "1MiB";
  std::string alias;
  double shutdown_grace = 10;
  bool no_idle_trim = false;
};

std::string ModelId(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name;
}

int Serve(ServeFlags& f) {
  // Every thread started from here on inherits the mask, so only the waiter below sees the
  // signals and the shutdown runs in an ordinary thread, not in a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is an error return, not a signal

  LoadedModel lm = LoadModel(f.model);
  WarnIfNoChatTemplate(lm);
  runtime::SchedulerOptions so;
  so.parallel = f.parallel;
  so.n_ctx = f.model.session.n_ctx;
  so.n_threads = f.model.session.n_threads;
  so.batch = f.model.session.batch;
  const KvAuto kv_auto = ResolveKvAuto(f.model.session.kv, ModelPathOf(f.model), lm.model->info());
  so.kv = kv_auto.policy;
  so.prompt_cache_bytes = ParseByteSize("--prompt-cache-bytes", f.prompt_cache);
  // The pool serves prompt lookup only: without --spec ngram it would index every finished
  // request for nothing.
  so.spec_pool_bytes = ParseByteSize("--spec-pool-bytes", f.spec_pool);
  if (runtime::ParseSpecMode(f.spec.mode) != runtime::SpecMode::kNgram) so.spec_pool_bytes = 0;
  so.max_queue = f.max_queue;
  so.trim_when_idle = !f.no_idle_trim;
  // --spec draft -md FILE: one draft session for the server (a request speculates only while it
  // decodes alone, so one is never wanted by two at once).
  const std::unique_ptr<DraftModel> draft = ResolveSpec(f.spec, f.model, lm);
  so.draft_session = draft ? draft->session.get() : nullptr;
  runtime::Scheduler scheduler(*lm.model, *lm.tokenizer, so);

  server::ServerOptions opt = f.server;
  opt.model_id = f.alias.empty() ? ModelId(f.model.model.empty() ? DefaultModelPath() : f.model.model)
                                 : f.alias;
  opt.sampler = f.sampler;
  opt.spec = f.spec.params;  // mode set by ResolveSpec
  opt.max_body_bytes = ParseByteSize("--max-body-bytes", f.max_body);
  if (opt.limits.max_tokens < 1) throw Error("--max-tokens-limit must be at least 1");
  if (opt.http_threads <= 0) opt.http_threads = f.parallel + f.max_queue + 4;
  server::ChatSetup chat{lm.tokenizer.get(), lm.chat.get(), lm.tokenizer->vocab().chat_template,
                         lm.model->info().arch};
  server::HttpServer http(opt, scheduler, chat);
  const int port = http.Bind();

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "tqlm serve: %s, stopping (in-flight requests get up to %.0f s)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", f.shutdown_grace);
    http.BeginShutdown();
    scheduler.Shutdown(std::chrono::milliseconds(int64_t(f.shutdown_grace * 1000)));
    http.Stop();
  });
  const runtime::ResolvedKv kv = runtime::ResolveKvPolicy(so.kv, lm.model->info().layers, 0);
  std::fprintf(stderr,
               "tqlm serve: %s on http://%s:%d (model id '%s', %d slots x %d tokens, KV %s with "
               "%d sink tokens and tool definitions up to %d tokens full precision, prompt "
               "cache %s)\n",
               lm.model->info().name.c_str(), opt.host.c_str(), port, opt.model_id.c_str(),
               f.parallel, scheduler.n_ctx(), DescribeKvAuto(kv_auto, lm.model->info()).c_str(),
               kv.sink_tokens,
               so.kv.tools_head_max, f.prompt_cache.c_str());
  http.Listen();
  // Listen returned without a signal (it failed): wake the waiter so it can end.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  const runtime::SchedulerStats st = scheduler.Stats();
  std::fprintf(stderr, "tqlm serve: stopped after %llu requests, %llu tokens generated\n",
               static_cast<unsigned long long>(st.requests_finished),
               static_cast<unsigned long long>(st.generated_tokens));
  return 0;
}

CommandRegistration reg("serve", "OpenAI-compatible HTTP server with continuous batching",
                        [](CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  // Unset sampling fields of a request take the same defaults as run and chat (SamplerParams):
  // OpenAI's (temperature 1, no top-k/min-p) make the small default model ramble.
  f->server.http_threads = 0;
  f->model.session.kv = runtime::DefaultKvPolicy();  // measured default, see kv_policy.h
  AddModelFlags(app, f->model);
  AddSamplerFlags(app, f->sampler);
  AddSpecFlags(app, f->spec);  // a request decoding alone speculates
  app.add_option("--host", f->server.host, "address to listen on")
      ->envname("TQLM_HOST")->capture_default_str();
  app.add_option("--port", f->server.port, "port (0: any free port)")
      ->envname("TQLM_PORT")->capture_default_str()->check(CLI::Range(0, 65535));
  app.add_option("--api-key", f->server.api_key, "require 'Authorization: Bearer KEY' on /v1/*")
      ->envname("TQLM_API_KEY");
  app.add_option("--alias", f->alias, "model id to serve under (default: the file name)");
  app.add_flag("--strict-model-name", f->server.strict_model_name,
               "answer 404 to requests that name another model (default: serve any name, as "
               "llama-server does)");
  app.add_flag("--no-log-requests{false}", f->server.log_requests,
               "no line on stderr per finished request");
  app.add_option("--parallel,--np", f->parallel, "sequences decoded together (slots)")
      ->envname("TQLM_PARALLEL")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--max-queue", f->max_queue, "requests waiting for a slot before 429")
      ->envname("TQLM_MAX_QUEUE")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--spec-pool-bytes", f->spec_pool,
                 "with --spec ngram: finished requests' tokens kept for prompt lookup across "
                 "requests (0: off)")
      ->envname("TQLM_SPEC_POOL_BYTES")->capture_default_str();
  app.add_option("--prompt-cache-bytes", f->prompt_cache, "prefix cache size cap (0: off)")
      ->envname("TQLM_PROMPT_CACHE_BYTES")->capture_default_str();
  app.add_option("--max-body-bytes", f->max_body, "largest request body")
      ->envname("TQLM_MAX_BODY_BYTES")->capture_default_str();
  app.add_option("--max-tokens-limit", f->server.limits.max_tokens,
                 "largest max_tokens a request may ask for")
      ->envname("TQLM_MAX_TOKENS_LIMIT")->capture_default_str();
  app.add_option("-n,--n-predict", f->server.default_max_tokens,
                 "max_tokens for requests that give none (-1: until the context is full)")
      ->envname("TQLM_N_PREDICT")->capture_default_str()->check(CLI::Range(-1, 1 << 24));
  app.add_option("--http-threads", f->server.http_threads,
                 "HTTP worker threads (0: parallel + max-queue + 4)")
      ->capture_default_str();
  app.add_flag("--no-idle-trim", f->no_idle_trim,
               "keep freed heap memory when idle (default: give it back, see docs/RESULTS.md)");
  app.add_option("--shutdown-grace", f->shutdown_grace,
                 "seconds in-flight requests may run after SIGINT/SIGTERM")
      ->capture_default_str();
  return [f] { return Serve(*f); };
});

}  // namespace
}  // namespace tqlm::cli
