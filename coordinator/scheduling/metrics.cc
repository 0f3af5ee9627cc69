#include "coordinator/scheduling/metrics.h"

#include <cmath>
#include <cstdio>

namespace layerskip::coordinator {
namespace {

std::string Num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out;
}

}  // namespace

void MetricsRegistry::Counter::Add(double v) { std::lock_guard<std::mutex> l(*mu_); v_ += v; }
double MetricsRegistry::Counter::value() const { std::lock_guard<std::mutex> l(*mu_); return v_; }
void MetricsRegistry::Gauge::Set(double v) { std::lock_guard<std::mutex> l(*mu_); v_ = v; }
double MetricsRegistry::Gauge::value() const { std::lock_guard<std::mutex> l(*mu_); return v_; }

void MetricsRegistry::Histogram::Observe(double v) {
  std::lock_guard<std::mutex> l(*mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

MetricsRegistry::Family& MetricsRegistry::GetFamily(const std::string& name, const std::string& help,
                                                    const std::string& type) {
  for (auto& f : families_)
    if (f->name == name) return *f;
  families_.push_back(std::make_unique<Family>(Family{name, help, type, {}}));
  return *families_.back();
}

MetricsRegistry::Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                                      const std::string& labels) {
  std::lock_guard<std::mutex> l(mu_);
  counters_.push_back(std::unique_ptr<Counter>(new Counter(&mu_)));
  GetFamily(name, help, "counter").series.emplace_back(labels, counters_.back().get());
  return counters_.back().get();
}

MetricsRegistry::Gauge* MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                                  const std::string& labels) {
  std::lock_guard<std::mutex> l(mu_);
  gauges_.push_back(std::unique_ptr<Gauge>(new Gauge(&mu_)));
  GetFamily(name, help, "gauge").series.emplace_back(labels, gauges_.back().get());
  return gauges_.back().get();
}

MetricsRegistry::Histogram* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                                          std::vector<double> bounds) {
  std::lock_guard<std::mutex> l(mu_);
  histograms_.push_back(std::unique_ptr<Histogram>(new Histogram(&mu_, std::move(bounds))));
  GetFamily(name, help, "histogram").series.emplace_back("", histograms_.back().get());
  return histograms_.back().get();
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> l(mu_);
  const std::string model = "model_name=\"" + Escape(model_name_) + "\"";
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f->name + " " + f->help + "\n# TYPE " + f->name + " " + f->type + "\n";
    for (const auto& [labels, metric] : f->series) {
      const std::string lbl = labels.empty() ? model : model + "," + labels;
      if (f->type == "counter") {
        out += f->name + "{" + lbl + "} " + Num(static_cast<Counter*>(metric)->v_) + "\n";
      } else if (f->type == "gauge") {
        out += f->name + "{" + lbl + "} " + Num(static_cast<Gauge*>(metric)->v_) + "\n";
      } else {
        const auto* h = static_cast<Histogram*>(metric);
        uint64_t cum = 0;
        for (size_t i = 0; i <= h->bounds_.size(); ++i) {
          cum += h->counts_[i];
          const double le = i < h->bounds_.size() ? h->bounds_[i] : INFINITY;
          out += f->name + "_bucket{" + lbl + ",le=\"" + Num(le) + "\"} " + std::to_string(cum) + "\n";
        }
        out += f->name + "_sum{" + lbl + "} " + Num(h->sum_) + "\n";
        out += f->name + "_count{" + lbl + "} " + std::to_string(h->count_) + "\n";
      }
    }
  }
  return out;
}

ServiceMetrics::ServiceMetrics(const std::string& model_name) : registry_(model_name) {
  auto& r = registry_;
  const std::string p = "layerskip:";
  // Bucket choices follow vLLM's.
  ttft = r.AddHistogram(p + "time_to_first_token_seconds", "Time to first token in seconds.",
                        {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                         20.0, 40.0, 80.0, 160.0, 640.0, 2560.0});
  itl = r.AddHistogram(p + "inter_token_latency_seconds", "Inter-token latency in seconds.",
                       {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                        40.0, 80.0});
  const std::vector<double> req_buckets = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                                           40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  e2e = r.AddHistogram(p + "e2e_request_latency_seconds", "End-to-end request latency in seconds.", req_buckets);
  queue_time = r.AddHistogram(p + "request_queue_time_seconds", "Time requests spent waiting in seconds.", req_buckets);
  const std::vector<double> len_buckets = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
  prompt_len = r.AddHistogram(p + "request_prompt_tokens", "Prompt tokens per request.", len_buckets);
  generation_len = r.AddHistogram(p + "request_generation_tokens", "Generated tokens per request.", len_buckets);
  running = r.AddGauge(p + "num_requests_running", "Requests in the running batch.");
  waiting = r.AddGauge(p + "num_requests_waiting", "Requests waiting for a slot.");
  kv_usage = r.AddGauge(p + "kv_cache_usage_perc", "Fraction of KV-cache positions reserved (1 = full).");
  prompt_tokens = r.AddCounter(p + "prompt_tokens_total", "Prefilled prompt tokens.");
  generation_tokens = r.AddCounter(p + "generation_tokens_total", "Generated tokens.");
  num_drafts = r.AddCounter(p + "spec_decode_num_drafts", "Self-speculative rounds (drafts).");
  num_draft_tokens = r.AddCounter(p + "spec_decode_num_draft_tokens", "Drafted tokens.");
  num_accepted_tokens = r.AddCounter(p + "spec_decode_num_accepted_tokens", "Accepted draft tokens.");
  const std::string success = p + "request_success_total";
  success_length = r.AddCounter(success, "Finished requests by reason.", "finished_reason=\"length\"");
  success_stop = r.AddCounter(success, "Finished requests by reason.", "finished_reason=\"stop\"");
  cancelled = r.AddCounter(p + "request_cancelled_total", "Requests cancelled by the client, a deadline or shutdown.");
  aborted = r.AddCounter(p + "request_failed_total", "Requests failed by an engine error.");
  rejected = r.AddCounter(p + "request_rejected_total", "Requests rejected at submission (queue full, too large, draining).");
  autoregressive_fallback_steps =
      r.AddCounter(p + "spec_decode_disabled_steps_total",
                   "Sequence steps run without drafting: the batch was large, or automatic speculation predicted no gain.");
  draft_length = r.AddGauge(p + "spec_decode_draft_length",
                            "Draft length d automatic speculation chose for the last batch (0: autoregressive).");
  exit_layer = r.AddGauge(p + "spec_decode_exit_layer", "Exit layer E of the last automatic speculation choice.");
  predicted_speedup = r.AddGauge(p + "spec_decode_predicted_speedup",
                                 "Speedup over autoregressive the cost model predicted for the last automatic choice.");
  round_time_ratio = r.AddGauge(p + "spec_decode_round_time_ratio",
                                "Measured / predicted time of automatic speculation's rounds (running; 1 until timed).");
  autoregressive_time_ratio =
      r.AddGauge(p + "spec_decode_autoregressive_time_ratio",
                 "Measured / predicted time of automatic speculation's autoregressive steps (running; 1 until timed).");
  round_time_ratio->Set(1.0);
  autoregressive_time_ratio->Set(1.0);
}

void ServiceMetrics::AddAcceptedAtPosition(int position, double n) {
  std::lock_guard<std::mutex> l(mu_);
  while (static_cast<int>(accepted_per_pos_.size()) <= position) {
    const int i = static_cast<int>(accepted_per_pos_.size());
    accepted_per_pos_.push_back(registry_.AddCounter("layerskip:spec_decode_num_accepted_tokens_per_pos",
                                                     "Accepted draft tokens per draft position.",
                                                     "position=\"" + std::to_string(i) + "\""));
  }
  accepted_per_pos_[position]->Add(n);
}

}  // namespace layerskip::coordinator
