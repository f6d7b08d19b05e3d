// The decision pipeline as one hand-written completion handler instead of a coroutine: a coroutine per
// request would allocate a frame per request (too big for Asio's recycling cache, so a memalign each time;
// see tests/bench/README.md). The state of a request waiting for the store is pooled and the handler only
// points to it, so the front's coroutine awaits one operation per request, as when it called the store.
#include "policy_service.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <chrono>
#include <spdlog/spdlog.h>
#include <string>
#include <utility>

#include "log_exception.hpp"

namespace rg {

namespace asio = boost::asio;

// The series the service counts in; references into the registry's families, which outlive the service.
struct policy_service::counters {
  explicit counters(metrics::registry& r)
      : decisions(r.counters("rateguard_decisions_total",
                             "Policy decisions by what the rules decided (store_error: the store did not answer) "
                             "and by the rule (file:line; lock: a lock in force; none: no limit exceeded)",
                             {{"action"}, {"rule", max_rule_labels}})),
        passed(decisions.with({"none", "none"})),
        store_latency(r.histograms("rateguard_store_request_duration_seconds",
                                   "Round trip of one check to the counter store", store_latency_bounds())
                          .with({})),
        store_errors(r.counters("rateguard_store_errors_total", "Store checks that failed, by kind (timeout, error)",
                                {{"kind"}})),
        store_error_answers(r.counters("rateguard_store_error_answers_total",
                                       "Answers given under on_store_error, by answer (dunno, defer)", {{"answer"}})),
        locks_set(r.add_counter("rateguard_locks_set_total", "Locks set by this daemon when a hold rule tripped")),
        holds_journaled(
            r.add_counter("rateguard_holds_journaled_total", "Held messages written to the hold journal")) {
    // Every series of a fixed label set exists from the start at 0, so increase() sees the first error too.
    for (const char* kind : {"timeout", "error"}) store_errors.with({kind});
    for (const char* answer : {"dunno", "defer"}) store_error_answers.with({answer});
  }

  // A limits file of thousands of rules must not become thousands of series; the rest count as "other".
  static constexpr std::size_t max_rule_labels = 200;
  metrics::family<metrics::counter>& decisions;
  metrics::counter& passed;  // the common case, without a lookup
  metrics::histogram& store_latency;
  metrics::family<metrics::counter>& store_errors;
  metrics::family<metrics::counter>& store_error_answers;
  metrics::counter& locks_set;
  metrics::counter& holds_journaled;
};

const std::vector<double>& policy_service::store_latency_bounds() {
  static const std::vector<double> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5, 1, 2.5};
  return bounds;
}

// A request in the store's hands: the store's completion handler. Small (the request's state is pooled),
// since the store's operation moves it several times.
struct policy_service::decide_op {
  policy_service* self;
  message_tracker* tracker;
  const policy_request* req;
  pending* state;  // null once moved from or completed: fail() must not touch the handler then
  decide_handler handler;

  decide_op(policy_service* s, message_tracker* t, const policy_request* r, pending* st, decide_handler h)
      : self(s), tracker(t), req(r), state(st), handler(std::move(h)) {}
  decide_op(decide_op&& o) noexcept
      : self(o.self), tracker(o.tracker), req(o.req), state(std::exchange(o.state, nullptr)),
        handler(std::move(o.handler)) {}
  decide_op& operator=(decide_op&&) = delete;

  // The front coroutine's executor, as when the store completed the coroutine's own handler.
  using executor_type = asio::any_io_executor;
  executor_type get_executor() const noexcept { return handler.get_executor(); }

  void operator()(store_result res) {  // the counts
    policy_service* s = self;
    s->counters_->store_latency.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - state->asked).count());
    try {
      verdict v = tracker->finish(*state->snap, *req, state->p, res);
      s->decided(std::move(*this), std::move(v));
    } catch (...) {
      s->fail(std::move(*this), std::current_exception());
    }
  }
  void operator()(admin_result res) {  // the lock
    self->locked(std::move(*this), res);
  }
};

policy_service::policy_service(asio::any_io_executor ex, store& st, std::shared_ptr<const policy_snapshot> snap,
                               service_settings settings)
    : ex_(std::move(ex)), store_(st), snap_(std::move(snap)), settings_(std::move(settings)) {
  if (!settings_.metrics) {
    own_metrics_ = std::make_unique<metrics::registry>();
    settings_.metrics = own_metrics_.get();
  }
  counters_ = std::make_unique<counters>(*settings_.metrics);
  settings_.metrics->add_gauge_fn(
      "rateguard_locks_in_force",
      "Locks in force that this daemon set, by a hold rule or rateguardctl, and that no rateguardctl release or "
      "reset through it removed",
      [this] {
        const std::int64_t now = now_ms();
        std::erase_if(census_, [now](const auto& e) { return e.second <= now; });
        return static_cast<double>(census_.size());
      });
}

void policy_service::lock_changed(const std::string& identity, std::int64_t until_ms) {
  if (until_ms <= 0)
    census_.erase(identity);
  else if (census_.size() < max_census || census_.count(identity))
    census_[identity] = until_ms;
}

policy_service::~policy_service() = default;

service_counts policy_service::counts() const {
  service_counts c;
  c.requests = requests_;
  for (const auto& [labels, n] : counters_->decisions.series()) c.decisions[labels[0]] += n.value();
  c.store_buckets = counters_->store_latency.counts();
  c.locks_set = counters_->locks_set.value();
  c.holds_journaled = counters_->holds_journaled.value();
  return c;
}

asio::awaitable<verdict> policy_service::decide(message_tracker& tracker, const policy_request& req) {
  // Not a coroutine: async_initiate with use_awaitable is the one frame, as for any Asio operation.
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, verdict)>(
      [this](decide_handler handler, message_tracker* t, const policy_request* r) {
        start(*t, *r, std::move(handler));
      },
      asio::use_awaitable, &tracker, &req);
}

policy_service::pending* policy_service::acquire() {
  if (free_.empty()) {
    pool_.push_back(std::make_unique<pending>());
    free_.reserve(pool_.size());  // release() never allocates
    return pool_.back().get();
  }
  pending* s = free_.back();
  free_.pop_back();
  return s;
}

void policy_service::release(pending* s) {
  s->snap.reset();  // an idle slot must not keep a replaced snapshot alive
  free_.push_back(s);
}

void policy_service::start(message_tracker& tracker, const policy_request& req, decide_handler handler) {
  decide_op op(this, &tracker, &req, acquire(), std::move(handler));
  try {
    pending& st = *op.state;
    st.snap = snap_;
    note_request(*st.snap, req);
    st.p = tracker.prepare(*st.snap, req);
    if (!st.p.needs_store)
      decided(std::move(op), std::move(st.p.immediate));
    else {  // finish() reads only p.counters and p.signals of what goes to the store
      st.asked = std::chrono::steady_clock::now();
      store_.async_check(std::move(st.p.req), std::move(op));
    }
  } catch (...) {
    fail(std::move(op), std::current_exception());
  }
}

void policy_service::decided(decide_op&& op, verdict&& v) {
  count_decision(v);
  log_decision(v, *op.req);
  // Rare (a hold rule tripping on a key not locked yet), so the extra round trip before the answer is
  // affordable, and the next message of the key is already held.
  if (auto q = lock_request(v)) {
    op.state->until_ms = now_ms() + v.set_lock_ms;
    op.state->v = std::move(v);
    store_.async_admin(std::move(*q), std::move(op));
    return;
  }
  complete(std::move(op), std::move(v));
}

void policy_service::locked(decide_op&& op, const admin_result& res) {
  try {
    lock_answered(op.state->v, res, *op.req, op.state->until_ms);
  } catch (...) {
    fail(std::move(op), std::current_exception());
    return;
  }
  complete(std::move(op), std::move(op.state->v));
}

std::optional<admin_request> policy_service::lock_request(const verdict& v) const {
  if (v.set_lock_ms <= 0 || !v.hit) return std::nullopt;
  admin_request q;
  q.op = admin_op::lock;
  q.identity = counter_identity(v.hit->kind, v.hit->key);
  q.ttl_ms = v.set_lock_ms;
  q.reason = lock_reason(*v.hit);
  return q;
}

void policy_service::lock_answered(const verdict& v, const admin_result& res, const policy_request& req,
                                   std::int64_t until_ms) {
  const std::string key = key_name(v.hit->kind, v.hit->key);
  if (!res.ok) {
    lock_warning_.warn("cannot lock {}: {}", escape_log_value(key), escape_log_value(res.error));
    return;
  }
  if (!res.changed) return;  // another connection or node locked it first, and logged it
  for (const identity_state& s : res.identities)
    if (s.lock) until_ms = s.lock->until_ms;
  const std::string reason = lock_reason(*v.hit);
  spdlog::info("{}", format_lock(key, v.hit->rule_where, until_ms, reason, req, settings_.format));
  counters_->locks_set.inc();
  lock_changed(counter_identity(v.hit->kind, v.hit->key), until_ms);
  if (settings_.on_lock)
    settings_.on_lock(lock_event{key, v.hit->rule_where, reason, until_ms, std::string(req.get(attr::client_address)),
                                 std::string(req.get(attr::sender)), std::string(req.get(attr::queue_id))});
}

verdict policy_service::decide_at_once(message_tracker& tracker, const policy_request& req) {
  // Nothing can replace the snapshot before this returns.
  const policy_snapshot& snap = *snap_;
  note_request(snap, req);
  message_tracker::prepared p = tracker.prepare(snap, req);
  verdict v;
  if (!p.needs_store) {
    v = std::move(p.immediate);
  } else {
    const auto asked = std::chrono::steady_clock::now();
    const store_result res = store_.check_at_once(p.req);
    counters_->store_latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count());
    v = tracker.finish(snap, req, p, res);
  }
  count_decision(v);
  log_decision(v, req);
  if (auto q = lock_request(v)) {
    const std::int64_t until_ms = now_ms() + v.set_lock_ms;
    lock_answered(v, store_.admin_at_once(*q), req, until_ms);
  }
  if (std::vector<hold_record> finished = tracker.take_finished(); !finished.empty()) journal(std::move(finished));
  return v;
}

void policy_service::complete(decide_op&& op, verdict&& v) {
  // Taken out now: once the handler has run, the front may have ended the connection and its tracker.
  std::vector<hold_record> finished = op.tracker->take_finished();
  // Released first, so the front's next request (inside the handler) reuses the slot. `v` may live in the
  // slot: the handler moves it into the awaiting coroutine before resuming it, i.e. before any reuse.
  release(std::exchange(op.state, nullptr));
  // Runs the front until it waits again (it has sent the answer by then); the journal follows.
  std::move(op.handler)(nullptr, std::move(v));
  if (finished.empty()) return;
  try {
    journal(std::move(finished));
  } catch (const std::exception& e) {
    spdlog::error("hold journal: unexpected exception: {}", e.what());
  }
}

void policy_service::fail(decide_op&& op, std::exception_ptr e) {
  // The handler went to the store, or has completed: the exception is the caller's.
  if (!op.state) std::rethrow_exception(e);
  release(std::exchange(op.state, nullptr));
  std::move(op.handler)(std::move(e), verdict{});
}

void policy_service::end_connection(message_tracker& tracker) {
  tracker.end_connection();  // the message in progress is finished too
  journal(tracker.take_finished());
}

void policy_service::count_decision(const verdict& v) {
  if (v.store_failed) {
    counters_->decisions.with({"store_error", "none"}).inc();
    counters_->store_errors.with({v.store_error.find("timeout") != std::string::npos ? "timeout" : "error"}).inc();
    counters_->store_error_answers.with({v.reply == "DUNNO" ? "dunno" : "defer"}).inc();
    return;
  }
  if (v.act == action::none && !v.hit && !v.lock) {
    counters_->passed.inc();
    return;
  }
  counters_->decisions.with({to_string(v.act), v.hit ? std::string_view(v.hit->rule_where) : v.lock ? "lock" : "none"}).inc();
}

void policy_service::log_decision(const verdict& v, const policy_request& r) {
  if (!v.log) {
    if (spdlog::should_log(spdlog::level::debug)) spdlog::debug("{}", format_decision(v, r, settings_.format));
    return;
  }
  if (!v.store_failed) {
    spdlog::info("{}", format_decision(v, r, settings_.format));
    return;
  }
  // One line per second at most while the store is down; the count of the others follows.
  if (!store_warning_.ready()) return;
  if (const std::uint64_t more = store_warning_.suppressed(); more > 0)
    spdlog::warn("{} (and {} more store errors in the last second)", format_decision(v, r, settings_.format), more);
  else
    spdlog::warn("{}", format_decision(v, r, settings_.format));
}

std::int64_t policy_service::now_ms() const {
  if (settings_.clock) return settings_.clock();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void policy_service::journal(std::vector<hold_record> records) {
  for (hold_record& rec : records) {
    if (journal_pending_ >= settings_.journal_max_pending) {
      journal_warning_.warn("hold journal: {} writes pending: record of queue ID {} not written",
                            settings_.journal_max_pending,
                            escape_log_value(rec.queue_id.empty() ? "NOQUEUE" : rec.queue_id, 64));
      continue;
    }
    ++journal_pending_;
    asio::co_spawn(ex_, write_journal(std::move(rec)), [](std::exception_ptr e) { log_exception(e, "journal"); });
  }
}

asio::awaitable<void> policy_service::write_journal(hold_record rec) {
  admin_request q;
  q.op = admin_op::journal_add;
  q.record = std::move(rec);
  const std::string qid = q.record.queue_id.empty() ? std::string("NOQUEUE") : q.record.queue_id;
  admin_result res = co_await store_.async_admin(std::move(q), asio::use_awaitable);
  --journal_pending_;
  if (res.ok) counters_->holds_journaled.inc();
  if (!res.ok)
    journal_warning_.warn("hold journal: cannot record {}: {}", escape_log_value(qid, 64), escape_log_value(res.error));
  if (journal_pending_ == 0 && on_journal_idle_) on_journal_idle_();
}

void policy_service::note_request(const policy_snapshot& snap, const policy_request& r) {
  ++requests_;
  if (!warned_realm_) {
    if (auto w = realm_mismatch(snap, r.get(attr::sasl_username)); !w.empty()) {
      warned_realm_ = true;
      spdlog::warn("{}", escape_log_value(w));
    }
  }
  if (r.get(attr::protocol_state) == "RCPT") ++rcpt_requests_;
  // "Rate limiting does nothing after I moved the check": say so instead of failing silently.
  if (!warned_no_rcpt_ && requests_ == 1000 && rcpt_requests_ == 0) {
    warned_no_rcpt_ = true;
    spdlog::warn("1000 policy requests and none at protocol_state RCPT: limits are counted at RCPT; "
                 "list check_policy_service in smtpd_recipient_restrictions");
  }
}

}  // namespace rg
