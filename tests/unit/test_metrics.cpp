// The metrics registry and its text exposition: series per label set, the label cap, histogram buckets and
// the quantile the stats line reports, escaping.
#include <catch2/catch.hpp>
#include <cmath>

#include "metrics.hpp"

using namespace rg::metrics;

TEST_CASE("metrics: counters, gauges and their exposition", "[metrics]") {
  registry r;
  auto& req = r.counters("rateguard_requests_total", "Requests", {{"front"}, {"protocol_state"}});
  req.with({"policy", "RCPT"}).inc();
  req.with({"policy", "RCPT"}).inc(2);
  req.with({"milter", "END-OF-MESSAGE"}).inc();
  r.add_gauge("rateguard_config_generation", "Generation").set(3);
  r.add_gauge_fn("rateguard_connections_open", "Open", [] { return 7.0; });
  CHECK(r.render() ==
        "# HELP rateguard_requests_total Requests\n"
        "# TYPE rateguard_requests_total counter\n"
        "rateguard_requests_total{front=\"milter\",protocol_state=\"END-OF-MESSAGE\"} 1\n"
        "rateguard_requests_total{front=\"policy\",protocol_state=\"RCPT\"} 3\n"
        "# HELP rateguard_config_generation Generation\n"
        "# TYPE rateguard_config_generation gauge\n"
        "rateguard_config_generation 3\n"
        "# HELP rateguard_connections_open Open\n"
        "# TYPE rateguard_connections_open gauge\n"
        "rateguard_connections_open 7\n");
  CHECK(r.exposed_names() == std::vector<std::string>{"rateguard_requests_total", "rateguard_config_generation",
                                                       "rateguard_connections_open"});
}

TEST_CASE("metrics: a capped label overflows into \"other\"", "[metrics]") {
  registry r;
  auto& d = r.counters("rateguard_decisions_total", "Decisions", {{"action"}, {"rule", 2}});
  d.with({"defer", "limits.conf:1"}).inc();
  d.with({"defer", "limits.conf:2"}).inc();
  d.with({"defer", "limits.conf:3"}).inc();
  d.with({"hold", "limits.conf:4"}).inc();
  d.with({"defer", "limits.conf:1"}).inc();  // seen before the cap: keeps its own series
  CHECK(d.series().size() == 4);
  CHECK(d.with({"defer", "other"}).value() == 1);
  CHECK(d.with({"hold", "other"}).value() == 1);
  CHECK(d.with({"defer", "limits.conf:1"}).value() == 2);
}

TEST_CASE("metrics: histogram buckets are cumulative, le inclusive", "[metrics]") {
  registry r;
  auto& h = r.histograms("rateguard_store_request_duration_seconds", "Latency", {0.001, 0.01}).with({});
  h.observe(0.001);
  h.observe(0.005);
  h.observe(3);
  CHECK(r.render() ==
        "# HELP rateguard_store_request_duration_seconds Latency\n"
        "# TYPE rateguard_store_request_duration_seconds histogram\n"
        "rateguard_store_request_duration_seconds_bucket{le=\"0.001\"} 1\n"
        "rateguard_store_request_duration_seconds_bucket{le=\"0.01\"} 2\n"
        "rateguard_store_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"
        "rateguard_store_request_duration_seconds_sum 3.006\n"
        "rateguard_store_request_duration_seconds_count 3\n");
  CHECK(bucket_quantile(h.bounds(), h.counts(), 0.5) == 0.01);
  CHECK(bucket_quantile(h.bounds(), h.counts(), 0.3) == 0.001);
  CHECK(std::isinf(bucket_quantile(h.bounds(), h.counts(), 0.99)));
  CHECK(bucket_quantile(h.bounds(), {0, 0, 0}, 0.99) == 0);
}

TEST_CASE("metrics: label values and help text are escaped", "[metrics]") {
  registry r;
  r.counters("rateguard_x_total", "a \\ b\nc", {{"rule"}}).with({"a\"b\\c\nd"}).inc();
  CHECK(r.render() ==
        "# HELP rateguard_x_total a \\\\ b\\nc\n"
        "# TYPE rateguard_x_total counter\n"
        "rateguard_x_total{rule=\"a\\\"b\\\\c\\nd\"} 1\n");
}
