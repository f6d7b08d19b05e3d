// The daemon's numbers: counters, gauges and fixed-bucket histograms in families with bounded label sets,
// and their exposition in the Prometheus text format 0.0.4. Single-threaded like the event loop that owns
// the registry (rateguardd runs one io_context thread): nothing here is atomic. Not here: HTTP (the
// daemon's metrics listener serves render()), what is counted (the service and the fronts decide).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace rg::metrics {

// A label value past a label's cap of distinct values (a limits file with thousands of rules must not
// turn into thousands of series in every scrape).
inline constexpr std::string_view overflow_value = "other";

class counter {
 public:
  void inc(std::uint64_t n = 1) { value_ += n; }
  std::uint64_t value() const { return value_; }

 private:
  std::uint64_t value_ = 0;
};

class gauge {
 public:
  void set(double v) { value_ = v; }
  void add(double d) { value_ += d; }
  double value() const { return value_; }

 private:
  double value_ = 0;
};

// Cumulative buckets with fixed upper bounds (seconds, bytes...), plus sum and count.
class histogram {
 public:
  explicit histogram(std::vector<double> bounds);
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i]: observations <= bounds()[i] that are > bounds()[i-1] (not cumulative); the last one is +Inf.
  const std::vector<std::uint64_t>& counts() const { return counts_; }
  std::uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

// The upper bound of the bucket that holds quantile `q` (0..1) of the observations in `counts` (per bucket,
// as histogram::counts(), or a difference of two of them); +Inf when it falls in the last bucket, 0 when
// there is none.
double bucket_quantile(const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts, double q);

enum class kind : std::uint8_t { counter, gauge, histogram };

// One label: its name, and how many distinct values it may take (0: the caller guarantees a small fixed
// set); values past the cap become "other".
struct label {
  std::string name;
  std::size_t max_values = 0;
};

// A metric name with its series, one per distinct label set. Series live as long as the family, and the
// reference with() returns stays valid: callers on a hot path keep it.
template <typename T>
class family {
 public:
  family(std::vector<label> labels, std::vector<double> bounds = {})
      : labels_(std::move(labels)), seen_(labels_.size()), bounds_(std::move(bounds)) {}
  T& with(const std::vector<std::string_view>& values);
  // The series, by their label values, in label order.
  const std::map<std::vector<std::string>, T>& series() const { return series_; }
  const std::vector<label>& labels() const { return labels_; }

 private:
  std::vector<label> labels_;
  std::vector<std::set<std::string, std::less<>>> seen_;  // distinct values so far, for capped labels
  std::vector<double> bounds_;                            // histograms: every series' buckets
  std::map<std::vector<std::string>, T> series_;
};

class registry {
 public:
  // Names follow the OpenMetrics conventions: rateguard_ prefix, base unit suffix (_seconds), counters end in
  // _total. Registering a name twice is a programming error (it aborts).
  family<counter>& counters(std::string name, std::string help, std::vector<label> labels = {});
  family<gauge>& gauges(std::string name, std::string help, std::vector<label> labels = {});
  family<histogram>& histograms(std::string name, std::string help, std::vector<double> bounds,
                                std::vector<label> labels = {});
  // The unlabelled series of a new family.
  counter& add_counter(std::string name, std::string help) { return counters(std::move(name), std::move(help)).with({}); }
  gauge& add_gauge(std::string name, std::string help) { return gauges(std::move(name), std::move(help)).with({}); }
  // A gauge whose value is read at each render (connections open, the store's state...).
  void add_gauge_fn(std::string name, std::string help, std::function<double()> read);

  // Every metric in the Prometheus text exposition format 0.0.4, in registration order.
  std::string render() const;
  // The names of the metrics as a scrape shows them (a histogram's _bucket, _sum and _count too).
  std::vector<std::string> exposed_names() const;

 private:
  struct entry {
    std::string name, help;
    kind k;
    std::unique_ptr<family<counter>> c;
    std::unique_ptr<family<gauge>> g;
    std::unique_ptr<family<histogram>> h;
    std::function<double()> read;
  };
  entry& add(std::string name, std::string help, kind k);
  std::deque<entry> entries_;
};

// The exposition's escaping of a label value (backslash, double quote, newline).
std::string escape_label_value(std::string_view v);

}  // namespace rg::metrics
