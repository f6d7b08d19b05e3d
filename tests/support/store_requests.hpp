// Builders of store requests and operator commands for the store tests (memory in tests/unit, Redis and
// the equivalence test in tests/integration), so every test spells a request the same short way.
#pragma once

#include <string>
#include <vector>

#include "store_types.hpp"

namespace rg::test {

inline counter_spec counter(std::string identity, std::uint32_t window_s, std::uint64_t limit = 0, char tag = 'm',
                            std::uint32_t cost = 1) {
  counter_spec c;
  c.identity = std::move(identity);
  c.unit_tag = tag;
  c.window_s = window_s;
  c.cost = cost;
  c.refuse_limit = limit;
  return c;
}

inline store_request request(std::vector<counter_spec> counters, std::int64_t now, bool charge = true) {
  store_request r;
  r.counters = std::move(counters);
  r.now_ms = now;
  r.charge = charge;
  return r;
}

// A counter that keeps a baseline: burst rules with this factor and floor on it.
inline counter_spec burst(std::string identity, std::uint32_t window_s, double factor, std::uint64_t floor,
                          std::uint64_t limit = 0, char tag = 'm') {
  auto c = counter(std::move(identity), window_s, limit, tag);
  c.burst_factor = factor;
  c.burst_floor = floor;
  return c;
}

// A novelty counter (tag 'N' or 'D') looking up these familiarity bits.
inline counter_spec novelty(std::string identity, char tag, std::uint32_t window_s, std::vector<std::uint16_t> bits,
                            std::uint64_t limit = 0) {
  auto c = counter(std::move(identity), window_s, limit, tag, 0);
  c.novel = std::move(bits);
  return c;
}

inline signal_spec signal_of(std::string identity, char tag, std::uint32_t window_s, std::string value,
                          std::uint64_t limit = 0) {
  signal_spec s;
  s.identity = std::move(identity);
  s.tag = tag;
  s.window_s = window_s;
  s.value = std::move(value);
  s.refuse_limit = limit;
  return s;
}

inline store_request request_with(std::vector<counter_spec> counters, std::vector<signal_spec> signals, std::int64_t now,
                                  bool charge = true,
                                  std::int64_t half_life_ms = default_baseline_half_life.count()) {
  auto r = request(std::move(counters), now, charge);
  r.signals = std::move(signals);
  r.half_life_ms = half_life_ms;
  return r;
}

inline admin_request op(admin_op o, std::string identity, std::int64_t now) {
  admin_request r;
  r.op = o;
  r.identity = std::move(identity);
  r.now_ms = now;
  return r;
}

inline admin_request lock(std::string identity, std::int64_t ttl_ms, std::string reason, std::int64_t now) {
  auto r = op(admin_op::lock, std::move(identity), now);
  r.ttl_ms = ttl_ms;
  r.reason = std::move(reason);
  return r;
}

inline admin_request top(std::string prefix, char tag, std::uint32_t window_s, std::size_t limit, std::int64_t now) {
  admin_request r;
  r.op = admin_op::top;
  r.prefix = std::move(prefix);
  r.unit_tag = tag;
  r.window_s = window_s;
  r.limit = limit;
  r.now_ms = now;
  return r;
}

inline admin_request hold(std::string key, std::string queue_id, std::int64_t now) {
  admin_request r;
  r.op = admin_op::journal_add;
  r.record.key = std::move(key);
  r.record.queue_id = std::move(queue_id);
  r.record.instance = "i." + r.record.queue_id;
  r.record.rule = "limits.conf:7";
  r.record.reason = "rate";
  r.record.client = "192.0.2.7";
  r.record.sender = "a@example.com";
  r.record.recipients = 3;
  r.now_ms = now;
  return r;
}

inline admin_request holds(std::int64_t since, std::string key, std::size_t limit) {
  admin_request r;
  r.op = admin_op::journal_read;
  r.since_ms = since;
  r.key = std::move(key);
  r.limit = limit;
  return r;
}

inline std::vector<std::string> queue_ids(const admin_result& r) {
  std::vector<std::string> out;
  for (auto& h : r.holds) out.push_back(h.queue_id);
  return out;
}

}  // namespace rg::test
