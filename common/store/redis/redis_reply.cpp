// redis_reply: the RESP reader, hiredis replies and Redis errors as rateguard values (see redis_reply.hpp).
#include "redis_reply.hpp"

#include "decision_log.hpp"

#include "redis_check.hpp"
#include "redis_script.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace rg {

namespace {

// The reader's reply objects: hiredis' layout, their strings and element arrays from malloc, the objects themselves
// from a pool of the thread's: every check reply is about ten objects, and malloc + free for each is a tenth of the
// daemon's work per request. free_reply (not freeReplyObject) gives them back.
struct reply_pool {
  static constexpr std::size_t kept = 1024;  // the objects of ~100 replies in flight; more go back to free()
  std::vector<redisReply*> objects;
  reply_pool() { objects.reserve(kept); }
  ~reply_pool() {
    for (redisReply* r : objects) std::free(r);
  }
};
thread_local reply_pool pool;

redisReply* new_reply(const redisReadTask* task, int type) {
  redisReply* r = nullptr;
  if (!pool.objects.empty()) {
    r = pool.objects.back();
    pool.objects.pop_back();
  } else {
    r = static_cast<redisReply*>(std::malloc(sizeof(redisReply)));
    if (r == nullptr) return nullptr;
  }
  std::memset(r, 0, sizeof *r);
  r->type = type;
  if (task->parent != nullptr) static_cast<redisReply*>(task->parent->obj)->element[task->idx] = r;
  return r;
}
void* new_string(const redisReadTask* task, char* str, size_t len) {
  auto* buf = static_cast<char*>(std::malloc(len + 1));
  if (buf == nullptr) return nullptr;
  std::memcpy(buf, str, len);
  buf[len] = '\0';
  redisReply* r = new_reply(task, task->type);
  if (r == nullptr) {
    std::free(buf);
    return nullptr;
  }
  r->str = buf;
  r->len = len;
  return r;
}
void* new_array(const redisReadTask* task, int elements) {
  redisReply** element = nullptr;
  if (elements > 0) {
    const auto n = static_cast<std::size_t>(elements);
    element = static_cast<redisReply**>(std::malloc(n * sizeof(redisReply*)));
    if (element == nullptr) return nullptr;
    std::memset(element, 0, n * sizeof(redisReply*));  // free_reply walks every slot
  }
  redisReply* r = new_reply(task, REDIS_REPLY_ARRAY);
  if (r == nullptr) {
    std::free(element);
    return nullptr;
  }
  r->element = element;
  r->elements = static_cast<std::size_t>(elements > 0 ? elements : 0);
  return r;
}
void* new_integer(const redisReadTask* task, long long value) {
  redisReply* r = new_reply(task, REDIS_REPLY_INTEGER);
  if (r != nullptr) r->integer = value;
  return r;
}
void* new_nil(const redisReadTask* task) { return new_reply(task, REDIS_REPLY_NIL); }
void free_object(void* r) { free_reply(static_cast<redisReply*>(r)); }

}  // namespace

void free_reply(redisReply* r) noexcept {
  if (r == nullptr) return;
  if (r->element != nullptr) {
    for (std::size_t i = 0; i < r->elements; ++i) free_reply(r->element[i]);
    std::free(r->element);
  }
  std::free(r->str);
  if (pool.objects.size() < reply_pool::kept) {
    try {
      pool.objects.push_back(r);
      return;
    } catch (...) {  // out of memory: free() below
    }
  }
  std::free(r);
}

reader_ptr new_reader() {
  // hiredis takes a non-const pointer but never writes through it.
  static redisReplyObjectFunctions functions = {new_string, new_array, new_integer, new_nil, free_object};
  return reader_ptr(redisReaderCreateWithFunctions(&functions));
}



// The one place where hiredis and Redis failures become typed errors; `context` names the step.
redis_error to_redis_error(std::string_view context, const redisReader* reader, const redisReply* reply) {
  if (reader != nullptr && reader->err != 0) {
    return {redis_errc::protocol, fmt::format("{}: protocol error: {}", context, escape_log_value(reader->errstr, 200))};
  }
  if (reply == nullptr) return {redis_errc::unexpected_reply, fmt::format("{}: no reply", context)};
  if (reply->type == REDIS_REPLY_ERROR) {
    const std::string_view msg(reply->str, reply->len);
    redis_errc code = redis_errc::server;
    if (msg.starts_with("NOSCRIPT")) {
      code = redis_errc::noscript;
    } else if (msg.starts_with("ERR Function not found")) {
      code = redis_errc::no_function;
    } else if (msg.starts_with("NOAUTH") || msg.starts_with("WRONGPASS") || msg.starts_with("NOPERM")) {
      code = redis_errc::auth;
    } else if (msg.starts_with("READONLY") || msg.starts_with("NOREPLICAS")) {
      code = redis_errc::not_master;
    }
    return {code, fmt::format("{}: {}", context, escape_log_value(msg, 200))};
  }
  return {redis_errc::unexpected_reply, fmt::format("{}: unexpected reply type {}", context, reply->type)};
}

store_result failure(std::string error) {
  store_result r;
  r.ok = false;
  r.error = std::move(error);
  return r;
}

admin_result admin_failure(std::string error) {
  admin_result r;
  r.ok = false;
  r.error = std::move(error);
  return r;
}

bool is_array(const redisReply* r, std::size_t elements) {
  return r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements == elements;
}

namespace {

bool non_negative(const redisReply* e) {
  return e != nullptr && e->type == REDIS_REPLY_INTEGER && e->integer >= 0;
}
bool is_string(const redisReply* e) { return e != nullptr && e->type == REDIS_REPLY_STRING; }

// A baseline's average as the scripts write it (%.17g, so it reads back as the same double).
std::optional<double> parse_average(const redisReply& e) {
  double v = 0;
  const auto r = std::from_chars(e.str, e.str + e.len, v);
  if (r.ec != std::errc() || r.ptr != e.str + e.len) return std::nullopt;
  return v;
}

// "m60" -> ('m', 60).
bool parse_window(const redisReply* e, char& tag, std::uint32_t& window_s) {
  if (!is_string(e) || e->len < 2) return false;
  tag = e->str[0];
  const auto r = std::from_chars(e->str + 1, e->str + e->len, window_s);
  return r.ec == std::errc() && r.ptr == e->str + e->len;
}

}  // namespace

// The layout is redis_check.hpp's (check_*_fields).
store_result parse_check_reply(const redisReply& reply, const store_request& req) {
  if (reply.type == REDIS_REPLY_ERROR) return failure("redis error: " + to_redis_error("EVALSHA", nullptr, &reply).text);
  const std::size_t counters = req.counters.size();
  const auto bursts = static_cast<std::size_t>(std::count_if(
      req.counters.begin(), req.counters.end(), [](const counter_spec& c) { return c.burst_factor > 0; }));
  const auto novel = static_cast<std::size_t>(std::count_if(
      req.counters.begin(), req.counters.end(), [](const counter_spec& c) { return !c.novel.empty(); }));
  const std::size_t fixed =
      1 + counters + check_baseline_fields * bursts + check_novelty_fields * novel + req.signals.size();
  const bool shape_ok = reply.type == REDIS_REPLY_ARRAY && reply.elements >= fixed &&
                        (reply.elements - fixed) % check_lock_fields == 0 &&
                        std::all_of(reply.element, reply.element + counters + 1, non_negative);
  if (!shape_ok) return failure("redis: unexpected reply to the check script");
  store_result r;
  r.ok = true;
  r.charged = reply.element[0]->integer != 0;
  r.counts.reserve(counters);
  for (std::size_t i = 1; i <= counters; ++i) r.counts.push_back(static_cast<std::uint64_t>(reply.element[i]->integer));
  if (reply.element[0]->integer == 2) mark_repeat(r, req);
  std::size_t at = counters + 1;
  if (std::any_of(req.counters.begin(), req.counters.end(), [](const counter_spec& c) { return c.burst_factor > 0; }))
    r.baselines.resize(counters);
  for (std::size_t i = 0; i < counters; ++i) {
    if (!(req.counters[i].burst_factor > 0)) continue;
    const redisReply* avg = reply.element[at++];
    const redisReply* history = reply.element[at++];
    if (!is_string(avg) || history == nullptr || history->type != REDIS_REPLY_INTEGER)
      return failure("redis: unexpected baseline in the check script's reply");
    if (avg->len == 0) continue;
    const auto v = parse_average(*avg);
    if (!v) return failure("redis: unexpected baseline in the check script's reply");
    baseline_value& b = r.baselines[i];
    b.present = true;
    b.average = *v;
    b.history_ms = history->integer;
  }
  if (novel > 0) r.novelty.resize(counters);
  for (std::size_t i = 0; i < counters && novel > 0; ++i) {
    if (req.counters[i].novel.empty()) continue;
    const redisReply* history = reply.element[at++];
    const redisReply* added = reply.element[at++];
    if (history == nullptr || history->type != REDIS_REPLY_INTEGER || !non_negative(added) ||
        added->integer > static_cast<long long>(req.counters[i].novel.size()))
      return failure("redis: unexpected novelty in the check script's reply");
    novelty_value& v = r.novelty[i];
    v.present = history->integer >= 0;
    v.history_ms = std::max<long long>(0, history->integer);
    v.added = static_cast<std::uint32_t>(added->integer);
  }
  r.distinct.reserve(req.signals.size());
  for (std::size_t i = 0; i < req.signals.size(); ++i, ++at) {
    if (!non_negative(reply.element[at]))
      return failure("redis: unexpected signal in the check script's reply");
    r.distinct.push_back(static_cast<std::uint64_t>(reply.element[at]->integer));
  }
  if (reply.elements == fixed) return r;
  // Locks are rare: only then are the keys numbered again (KEYS = distinct identities in order of first
  // appearance), and the locks put in that order, like the memory store's (the script walks a hash).
  std::vector<const std::string*> keys;
  const auto add_key = [&](const std::string& id) {
    if (std::none_of(keys.begin(), keys.end(), [&](const std::string* k) { return *k == id; }))
      keys.push_back(&id);
  };
  for (const auto& c : req.counters) add_key(c.identity);
  for (const auto& s : req.signals) add_key(s.identity);
  std::vector<std::pair<std::size_t, lock_info>> locks;
  for (std::size_t i = fixed; i < reply.elements; i += check_lock_fields) {
    const redisReply* k = reply.element[i];
    const redisReply* v = reply.element[i + 1];
    const auto index = non_negative(k) ? static_cast<std::size_t>(k->integer) : 0;
    auto lock = index >= 1 && index <= keys.size() && is_string(v)
                    ? parse_lock_value(*keys[index - 1], as_view(*v))
                    : std::nullopt;
    if (!lock) return failure("redis: unexpected lock in the check script's reply");
    locks.emplace_back(index, std::move(*lock));
  }
  std::sort(locks.begin(), locks.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (auto& [index, lock] : locks) r.locks.push_back(std::move(lock));
  return r;
}

// One key's {lock in force or '', {window prefix, count, ...}, {baseline, average, history_ms, ...},
// {signal, distinct, ...}} from the read script.
std::optional<identity_state> parse_state(std::string identity, const redisReply* e) {
  if (!is_array(e, 4) || !is_string(e->element[0])) return std::nullopt;
  const redisReply* windows = e->element[1];
  const redisReply* bases = e->element[2];
  const redisReply* signals = e->element[3];
  if (windows->type != REDIS_REPLY_ARRAY || windows->elements % 2 != 0 || bases->type != REDIS_REPLY_ARRAY ||
      bases->elements % 3 != 0 || signals->type != REDIS_REPLY_ARRAY || signals->elements % 2 != 0)
    return std::nullopt;
  identity_state st;
  const redisReply* lock = e->element[0];
  if (lock->len > 0 && !(st.lock = parse_lock_value(identity, as_view(*lock)))) return std::nullopt;
  for (std::size_t i = 0; i < windows->elements; i += 2) {
    window_count w;
    const redisReply* count = windows->element[i + 1];
    if (!parse_window(windows->element[i], w.unit_tag, w.window_s) || !non_negative(count))
      return std::nullopt;
    w.count = static_cast<std::uint64_t>(count->integer);
    st.windows.push_back(w);
  }
  for (std::size_t i = 0; i < bases->elements; i += 3) {
    baseline_state b;
    const redisReply* avg = bases->element[i + 1];
    const redisReply* history = bases->element[i + 2];
    const auto v = is_string(avg) ? parse_average(*avg) : std::nullopt;
    if (!parse_window(bases->element[i], b.unit_tag, b.window_s) || !v || !non_negative(history))
      return std::nullopt;
    b.value.present = true;
    b.value.average = *v;
    b.value.history_ms = history->integer;
    st.baselines.push_back(b);
  }
  for (std::size_t i = 0; i < signals->elements; i += 2) {
    signal_count c;
    const redisReply* distinct = signals->element[i + 1];
    if (!parse_window(signals->element[i], c.tag, c.window_s) || !non_negative(distinct)) return std::nullopt;
    c.distinct = static_cast<std::uint64_t>(distinct->integer);
    st.signals.push_back(c);
  }
  const auto by_window = [](const auto& a, const auto& b) {
    return std::pair(a.unit_tag, a.window_s) < std::pair(b.unit_tag, b.window_s);
  };
  std::sort(st.windows.begin(), st.windows.end(), by_window);
  std::sort(st.baselines.begin(), st.baselines.end(), by_window);
  std::sort(st.signals.begin(), st.signals.end(), [](const signal_count& a, const signal_count& b) {
    return std::pair(a.tag, a.window_s) < std::pair(b.tag, b.window_s);
  });
  st.identity = std::move(identity);
  return st;
}

// "ms-seq" -> ms.
std::int64_t stream_id_ms(std::string_view id) {
  std::int64_t ms = 0;
  std::from_chars(id.data(), id.data() + id.size(), ms);
  return ms;
}

// One stream entry [id, [field, value, ...]] -> a hold record; unknown fields are ignored.
std::optional<hold_record> parse_hold(const redisReply* e) {
  if (!is_array(e, 2) || e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
    return std::nullopt;
  hold_record h;
  h.id = as_view(*e->element[0]);
  h.time_ms = stream_id_ms(h.id);
  const redisReply* f = e->element[1];
  for (std::size_t i = 0; i + 1 < f->elements; i += 2) {
    if (f->element[i]->type != REDIS_REPLY_STRING || f->element[i + 1]->type != REDIS_REPLY_STRING) return std::nullopt;
    const auto name = as_view(*f->element[i]);
    const auto value = as_view(*f->element[i + 1]);
    if (name == "recipients") {
      std::from_chars(value.data(), value.data() + value.size(), h.recipients);
      continue;
    }
    std::string* to = name == "queue_id" ? &h.queue_id
                      : name == "instance" ? &h.instance
                      : name == "key"      ? &h.key
                      : name == "rule"     ? &h.rule
                      : name == "reason"   ? &h.reason
                      : name == "client"   ? &h.client
                      : name == "sender"   ? &h.sender
                                           : nullptr;
    if (to != nullptr) to->assign(value);
  }
  return h;
}

}  // namespace rg
