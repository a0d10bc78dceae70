#include "server/metrics.h"

#include <fmt/format.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tqlm::server {

void Metrics::CountRequest(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
}

std::string Metrics::Render(const runtime::SchedulerStats& s) const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  out += "# HELP tqlm_http_requests_total HTTP requests answered, by endpoint and status code.\n"
         "# TYPE tqlm_http_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : requests_)
      out += fmt::format("tqlm_http_requests_total{{endpoint=\"{}\",code=\"{}\"}} {}\n", key.first,
                         key.second, n);
  }
  const double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  metric("tqlm_uptime_seconds", "gauge", "Seconds since the server started.", uptime);
  metric("tqlm_requests_finished_total", "counter", "Generations that ran to completion.",
         double(s.requests_finished));
  metric("tqlm_requests_cancelled_total", "counter", "Generations cancelled by a disconnect.",
         double(s.requests_cancelled));
  metric("tqlm_requests_failed_total", "counter", "Generations ended by an error.",
         double(s.requests_failed));
  metric("tqlm_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
         double(s.prompt_tokens));
  metric("tqlm_prefill_tokens_total", "counter", "Prompt tokens computed (not from the prompt cache).",
         double(s.prefill_tokens));
  metric("tqlm_generated_tokens_total", "counter", "Tokens generated.", double(s.generated_tokens));
  metric("tqlm_prefill_tokens_per_second", "gauge", "Prompt tokens computed per second of prefill.",
         s.prefill_seconds > 0 ? double(s.prefill_tokens) / s.prefill_seconds : 0.0);
  metric("tqlm_decode_tokens_per_second", "gauge",
         "Tokens generated per second of decoding (all sequences of a batch together).",
         s.decode_seconds > 0 ? double(s.generated_tokens) / s.decode_seconds : 0.0);
  metric("tqlm_decode_steps_total", "counter", "Batched decode steps.", double(s.decode_steps));
  metric("tqlm_spec_steps_total", "counter", "Speculative verification steps.",
         double(s.spec.steps));
  metric("tqlm_spec_proposed_tokens_total", "counter", "Tokens proposed by speculation.",
         double(s.spec.proposed));
  metric("tqlm_spec_accepted_tokens_total", "counter", "Proposed tokens accepted.",
         double(s.spec.accepted));
  metric("tqlm_spec_acceptance_rate", "gauge", "Accepted / proposed tokens.",
         s.spec.AcceptanceRate());
  metric("tqlm_spec_pool_proposals_total", "counter",
         "Verification steps whose proposal came from the shared n-gram pool.",
         double(s.spec_pool_proposals));
  metric("tqlm_spec_pool_bytes", "gauge", "Bytes held by the shared n-gram pool.",
         double(s.spec_pool_bytes));
  metric("tqlm_decode_batch_mean", "gauge", "Mean number of sequences per decode step.",
         s.decode_steps > 0 ? double(s.decode_batch_sum) / double(s.decode_steps) : 0.0);
  metric("tqlm_slots", "gauge", "Sequence slots (--parallel).", s.slots);
  metric("tqlm_slots_active", "gauge", "Slots holding a sequence.", s.active);
  metric("tqlm_queue_depth", "gauge", "Requests waiting for a slot.", s.queued);
  metric("tqlm_kv_bytes_used", "gauge", "KV cache bytes used by the active sequences.",
         double(s.kv.bytes_used));
  metric("tqlm_kv_bytes_allocated", "gauge", "KV cache bytes allocated by the active sequences.",
         double(s.kv.bytes_allocated));
  metric("tqlm_kv_bytes_f16_equivalent", "gauge", "The same tokens' K and V stored as f16.",
         double(s.kv.bytes_f16));
  metric("tqlm_prompt_cache_lookups_total", "counter", "Prompt-cache lookups.",
         double(s.prompt_cache.lookups));
  metric("tqlm_prompt_cache_hits_total", "counter", "Lookups that reused a cached prefix.",
         double(s.prompt_cache.hits));
  metric("tqlm_prompt_cache_tokens_reused_total", "counter", "Prompt tokens served from the cache.",
         double(s.prompt_cache.tokens_reused));
  metric("tqlm_prompt_cache_evictions_total", "counter", "Entries evicted for the byte cap.",
         double(s.prompt_cache.evictions));
  metric("tqlm_prompt_cache_entries", "gauge", "Cached prefixes.", double(s.prompt_cache.entries));
  metric("tqlm_prompt_cache_bytes", "gauge", "Bytes held by the prompt cache.",
         double(s.prompt_cache.bytes));
  metric("tqlm_prompt_cache_bytes_used", "gauge", "Bytes its cached tokens occupy.",
         double(s.prompt_cache.bytes_used));
  metric("tqlm_prompt_cache_bytes_f16_equivalent", "gauge", "Its tokens' K and V as f16.",
         double(s.prompt_cache.bytes_f16));
  metric("tqlm_heap_trims_total", "counter",
         "Times the idle server gave free heap pages back to the system.", double(s.heap_trims));
#if defined(__GLIBC__)
  // The C heap as glibc sees it: what the program holds vs. what sits free inside the heap
  // (fragmentation). Tells a leak (in use grows) from allocator growth (free grows) in RSS.
  const struct mallinfo2 mi = mallinfo2();
  metric("tqlm_heap_bytes_in_use", "gauge", "Bytes malloc has handed out and not got back.",
         double(mi.uordblks + mi.hblkhd));
  metric("tqlm_heap_bytes_free", "gauge", "Free bytes held inside malloc's arenas.",
         double(mi.fordblks));
#endif
  return out;
}

}  // namespace tqlm::server
