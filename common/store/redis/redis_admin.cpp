// The operator commands over Redis (see redis_admin.hpp): the commands of each admin_op and the reading of
// their replies, paging included. Nothing here touches a socket.
#include "redis_admin.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "redis_reply.hpp"

namespace rg {

namespace {

// top: identities per read-script call (each an HGETALL inside one script; 100 keep a call well under a
// millisecond, so the checks pipelined behind it are not held up), and keys per SCAN step.
constexpr std::size_t top_batch = 100;
constexpr std::string_view top_scan_count = "1000";
// journal_read: entries per XREVRANGE.
constexpr std::size_t journal_page = 1000;

// A Redis glob matching `s` literally.
std::string glob_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') out += '\\';
    out += ch;
  }
  return out;
}

std::vector<std::string> scan_args(const admin_keys& k, std::string cursor, std::string_view prefix) {
  // Ending in '}': identity hashes only, not their signals' HyperLogLogs ("<key>:i3600:<bucket>").
  return {"SCAN",  std::move(cursor),
          "MATCH", glob_escape(k.prefix + "{" + std::string(prefix)) + "*}",
          "COUNT", std::string(top_scan_count)};
}

// Newest first, from `from` down to since_ms.
admin_cmd journal_page_cmd(const admin_state& a, const admin_keys& k, std::string from) {
  const auto& q = a.req;
  const std::size_t want =
      q.key.empty() ? std::min(q.limit - a.result.holds.size(), journal_page) : journal_page;
  return admin_cmd{
      admin_cmd::page,
      script_count,
      {"XREVRANGE", k.prefix + "holds", std::move(from),
       q.since_ms > 0 ? std::to_string(q.since_ms) : std::string("-"), "COUNT", std::to_string(want)},
      false};
}

// Highest count first, ties by identity; SCAN may return a key twice, so duplicates go first.
void finish_top(admin_state& a) {
  auto& hits = a.hits;
  std::sort(hits.begin(), hits.end(),
            [](const auto& x, const auto& y) { return std::get<1>(x) < std::get<1>(y); });
  hits.erase(std::unique(hits.begin(), hits.end(),
                         [](const auto& x, const auto& y) { return std::get<1>(x) == std::get<1>(y); }),
             hits.end());
  std::stable_sort(hits.begin(), hits.end(),
                   [](const auto& x, const auto& y) { return std::get<0>(x) > std::get<0>(y); });
  for (std::size_t i = 0; i < hits.size() && i < a.req.limit; ++i) {
    auto& [count, identity, lock] = hits[i];
    identity_state& st = a.result.identities.emplace_back();
    st.identity = std::move(identity);
    st.windows.push_back({a.req.unit_tag, a.req.window_s, count});
    st.lock = std::move(lock);
  }
  hits.clear();
}

}  // namespace

std::string admin_keys::key_of(std::string_view identity) const {
  std::string key;
  key.reserve(prefix.size() + identity.size() + 2);
  key.append(prefix).append("{").append(identity).append("}");
  return key;
}

std::vector<admin_cmd> admin_first(const admin_state& s, const admin_keys& k) {
  const admin_request& q = s.req;
  const std::string now = std::to_string(q.now_ms);
  const auto once = [](std::size_t script, std::vector<std::string> args) {
    return std::vector<admin_cmd>{admin_cmd{admin_cmd::once, script, std::move(args), false}};
  };
  switch (q.op) {
    case admin_op::status:
      return once(read_s, {"1", k.key_of(q.identity), now, ""});
    case admin_op::lock:
      return once(lock_s, {"1", k.key_of(q.identity), now, std::to_string(q.ttl_ms),
                           std::string(cut_field(q.reason))});
    case admin_op::release:
      return once(release_s, {"1", k.key_of(q.identity), now});
    case admin_op::reset:
      return once(reset_s, {"1", k.key_of(q.identity)});
    case admin_op::journal_add: {
      const hold_record& h = q.record;
      std::vector<std::string> args = {"1", k.prefix + "holds", now, std::to_string(k.journal.max_entries),
                                       std::to_string(k.journal.max_age.count())};
      const std::array<const std::string*, 7> values = {&h.queue_id, &h.instance, &h.key,   &h.rule,
                                                        &h.reason,   &h.client,   &h.sender};
      for (std::size_t i = 0; i < values.size(); ++i) {
        args.emplace_back(journal_fields[i]);
        args.emplace_back(cut_field(*values[i]));
      }
      args.emplace_back(journal_fields[7]);
      args.push_back(std::to_string(h.recipients));
      return once(journal_add_s, std::move(args));
    }
    case admin_op::journal_read:
      return {journal_page_cmd(s, k, "+")};
    case admin_op::top:
      return {admin_cmd{admin_cmd::scan, script_count, scan_args(k, "0", q.prefix), false}};
  }
  return {};
}

bool admin_take(admin_state& a, const admin_cmd& cmd, const redisReply& reply, const admin_keys& k,
                std::vector<admin_cmd>& next) {
  const admin_request& q = a.req;
  admin_result& r = a.result;
  switch (cmd.step) {
    case admin_cmd::once:
      switch (q.op) {
        case admin_op::status: {
          auto st = reply.type == REDIS_REPLY_ARRAY && reply.elements == 1
                        ? parse_state(q.identity, reply.element[0])
                        : std::nullopt;
          if (!st) return false;
          r.identities.push_back(std::move(*st));
          return true;
        }
        case admin_op::lock: {
          if (!is_array(&reply, 2) || reply.element[0]->type != REDIS_REPLY_INTEGER ||
              reply.element[1]->type != REDIS_REPLY_STRING)
            return false;
          auto lock = parse_lock_value(q.identity, as_view(*reply.element[1]));
          if (!lock) return false;
          r.changed = reply.element[0]->integer == 1;
          identity_state& st = r.identities.emplace_back();
          st.identity = q.identity;
          st.lock = std::move(lock);
          return true;
        }
        case admin_op::release:
        case admin_op::reset:
          if (reply.type != REDIS_REPLY_INTEGER) return false;
          r.changed = reply.integer > 0;
          return true;
        case admin_op::journal_add: {
          if (reply.type != REDIS_REPLY_STRING) return false;
          hold_record h = q.record;
          h.id = as_view(reply);
          h.time_ms = stream_id_ms(h.id);
          for (std::string* f : {&h.queue_id, &h.instance, &h.key, &h.rule, &h.reason, &h.client, &h.sender})
            f->resize(cut_field(*f).size());
          r.holds.push_back(std::move(h));
          return true;
        }
        default:
          return false;
      }
    case admin_cmd::page: {
      if (reply.type != REDIS_REPLY_ARRAY) return false;
      for (std::size_t i = 0; i < reply.elements; ++i) {
        auto h = parse_hold(reply.element[i]);
        if (!h) return false;
        if (r.holds.size() < q.limit && (q.key.empty() || h->key == q.key)) r.holds.push_back(std::move(*h));
      }
      const std::size_t asked = std::stoul(cmd.args.back());
      if (r.holds.size() < q.limit && reply.elements == asked) {
        // More may be older: the next page starts just below the last ID seen.
        next.push_back(journal_page_cmd(
            a, k, "(" + std::string(as_view(*reply.element[reply.elements - 1]->element[0]))));
      } else {
        std::reverse(r.holds.begin(), r.holds.end());  // oldest first
      }
      return true;
    }
    case admin_cmd::scan: {
      if (!is_array(&reply, 2) || reply.element[0]->type != REDIS_REPLY_STRING ||
          reply.element[1]->type != REDIS_REPLY_ARRAY)
        return false;
      const redisReply& keys = *reply.element[1];
      // Read-script calls of up to top_batch keys: {numkeys, keys..., now, window}.
      std::vector<std::string> batch;
      const auto flush = [&] {
        if (batch.empty()) return;
        batch.insert(batch.begin(), std::to_string(batch.size()));
        batch.push_back(std::to_string(q.now_ms));
        batch.push_back(std::string(1, q.unit_tag) + std::to_string(q.window_s));
        next.push_back(admin_cmd{admin_cmd::counts, read_s, std::exchange(batch, {}), false});
      };
      for (std::size_t i = 0; i < keys.elements; ++i) {
        if (keys.element[i]->type != REDIS_REPLY_STRING) return false;
        if (++a.examined > top_scan_max) {
          r.truncated = true;
          a.scan_done = true;
          break;
        }
        batch.emplace_back(as_view(*keys.element[i]));
        if (batch.size() == top_batch) flush();
      }
      flush();
      const std::string_view cursor = as_view(*reply.element[0]);
      if (cursor == "0") a.scan_done = true;
      if (!a.scan_done) {
        next.push_back(
            admin_cmd{admin_cmd::scan, script_count, scan_args(k, std::string(cursor), q.prefix), false});
      }
      return true;
    }
    case admin_cmd::counts: {
      const std::size_t n = cmd.args.size() - 3;  // numkeys, keys..., now, window
      if (!is_array(&reply, n)) return false;
      const std::size_t skip = k.prefix.size() + 1;
      for (std::size_t i = 0; i < n; ++i) {
        const std::string& key = cmd.args[1 + i];
        if (key.size() <= skip || key.back() != '}') continue;  // not "<prefix>{identity}": not ours
        std::string identity = key.substr(skip, key.size() - skip - 1);
        auto st = parse_state(identity, reply.element[i]);
        if (!st) return false;
        if (!st->windows.empty() && st->windows[0].count > 0)
          a.hits.emplace_back(st->windows[0].count, std::move(identity), std::move(st->lock));
      }
      return true;
    }
  }
  return false;
}

void admin_finish(admin_state& s) {
  if (s.req.op == admin_op::top && s.result.error.empty()) finish_top(s);
}

}  // namespace rg
