#pragma once
// A small Prometheus registry (counters, gauges, histograms; text exposition format 0.0.4) and the
// service's metrics with vLLM's names under the `layerskip:` prefix, each labelled model_name="...".
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace layerskip::coordinator {

// Thread-safe. Metric objects live as long as the registry.
class MetricsRegistry {
 public:
  class Counter {
   public:
    void Add(double v);
    double value() const;
   private:
    friend class MetricsRegistry;
    explicit Counter(std::mutex* mu) : mu_(mu) {}
    std::mutex* mu_;
    double v_ = 0;
  };
  class Gauge {
   public:
    void Set(double v);
    double value() const;
   private:
    friend class MetricsRegistry;
    explicit Gauge(std::mutex* mu) : mu_(mu) {}
    std::mutex* mu_;
    double v_ = 0;
  };
  class Histogram {
   public:
    void Observe(double v);
   private:
    friend class MetricsRegistry;
    Histogram(std::mutex* mu, std::vector<double> bounds)
        : mu_(mu), bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
    std::mutex* mu_;
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
    double sum_ = 0;
    uint64_t count_ = 0;
  };

  // `labels` are extra labels after model_name, rendered as given: `position="0"`.
  explicit MetricsRegistry(std::string model_name) : model_name_(std::move(model_name)) {}
  Counter* AddCounter(const std::string& name, const std::string& help, const std::string& labels = "");
  Gauge* AddGauge(const std::string& name, const std::string& help, const std::string& labels = "");
  Histogram* AddHistogram(const std::string& name, const std::string& help, std::vector<double> bounds);
  // The text exposition of every metric.
  std::string Render() const;

 private:
  struct Family {
    std::string name, help, type;
    std::vector<std::pair<std::string, void*>> series;  // labels -> metric
  };
  Family& GetFamily(const std::string& name, const std::string& help, const std::string& type);

  std::string model_name_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
  std::vector<std::unique_ptr<Counter>> counters_;
  std::vector<std::unique_ptr<Gauge>> gauges_;
  std::vector<std::unique_ptr<Histogram>> histograms_;
};

// The service's metrics. Counters per draft position are created as positions appear.
class ServiceMetrics {
 public:
  explicit ServiceMetrics(const std::string& model_name);
  MetricsRegistry& registry() { return registry_; }

  MetricsRegistry::Histogram *ttft, *itl, *e2e, *queue_time, *prompt_len, *generation_len;
  MetricsRegistry::Gauge *running, *waiting, *kv_usage;
  MetricsRegistry::Counter *prompt_tokens, *generation_tokens, *num_drafts, *num_draft_tokens, *num_accepted_tokens;
  MetricsRegistry::Counter *success_length, *success_stop, *cancelled, *aborted, *rejected, *autoregressive_fallback_steps;
  // Automatic speculation (auto_speculations, auto_exit_layer): the last batch's choice, and the running
  // measured / predicted step times that scale the cost model (rounds, autoregressive steps; 1 until timed).
  MetricsRegistry::Gauge *draft_length, *exit_layer, *predicted_speedup, *round_time_ratio, *autoregressive_time_ratio;
  // spec_decode_num_accepted_tokens_per_pos{position="i"}
  void AddAcceptedAtPosition(int position, double n);

 private:
  MetricsRegistry registry_;
  std::mutex mu_;
  std::vector<MetricsRegistry::Counter*> accepted_per_pos_;
};

}  // namespace layerskip::coordinator
