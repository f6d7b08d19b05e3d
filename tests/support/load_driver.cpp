// The load driver: one blocking policy_client per connection, one thread each; samples are kept per
// connection (no locking while running) and merged when the threads are joined. Tests only.
#include "load_driver.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "daemon_fixture.hpp"

namespace rg::test {

std::size_t load_summary::count(const std::string& first_word) const {
  auto it = actions.find(first_word);
  return it == actions.end() ? 0 : it->second;
}

std::string load_summary::text() const {
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.1f", max_ms);
  std::string out = "sent=" + std::to_string(sent) + " answered=" + std::to_string(answered) +
                    " errors=" + std::to_string(errors) + " max_ms=" + ms + " actions={";
  bool first = true;
  for (const auto& [word, n] : actions) {
    out += (first ? "" : " ") + word + ":" + std::to_string(n);
    first = false;
  }
  return out + "}";
}

load_summary summarize(const std::vector<load_sample>& samples) {
  load_summary s;
  for (const auto& x : samples) {
    ++s.sent;
    if (!x.answered()) {
      ++s.errors;
      continue;
    }
    ++s.answered;
    s.max_ms = std::max(s.max_ms, x.ms());
    ++s.actions[x.action.substr(0, x.action.find(' '))];
  }
  return s;
}

load_driver::load_driver(load_options opts) : opts_(std::move(opts)) {
  if (!opts_.request) {
    opts_.request = [](int conn, std::uint64_t seq) {
      return rcpt_request("load" + std::to_string(conn),
                          "load-" + std::to_string(conn) + "-" + std::to_string(seq));
    };
  }
  for (int i = 0; i < opts_.connections; ++i)
    clients_.push_back(std::make_unique<policy_client>(opts_.socket_path));
  per_conn_.resize(clients_.size());
  for (int i = 0; i < opts_.connections; ++i) threads_.emplace_back([this, i] { run(i); });
}

load_driver::~load_driver() { stop(); }

void load_driver::run(int conn) {
  policy_client& c = *clients_[static_cast<std::size_t>(conn)];
  auto& out = per_conn_[static_cast<std::size_t>(conn)];
  const auto end = load_clock::now() + opts_.duration;
  for (std::uint64_t seq = 0; seq < opts_.max_requests && !stop_ && load_clock::now() < end; ++seq) {
    const std::string req = opts_.request(conn, seq);
    load_sample s;
    s.conn = conn;
    s.seq = seq;
    s.sent = load_clock::now();
    s.action = c.send(req) ? c.read_action(opts_.reply_timeout_ms) : std::string();
    s.done = load_clock::now();
    const bool ok = s.answered();
    out.push_back(std::move(s));
    if (!ok) break;
    ++answered_;
    if (opts_.pause.count() > 0) std::this_thread::sleep_for(opts_.pause);
  }
}

void load_driver::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  if (!per_conn_.empty()) {
    for (auto& v : per_conn_)
      samples_.insert(samples_.end(), std::make_move_iterator(v.begin()), std::make_move_iterator(v.end()));
    per_conn_.clear();
  }
}

void load_driver::stop() {
  stop_ = true;
  join();
}

void load_driver::wait() { join(); }

void print_reliability(const std::string& what, const load_summary& s, int crashes, const std::string& notes,
                       const std::string& test) {
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.0f", s.max_ms);
  // A markdown table row: | what was done | sent / answered | errors | max answer | crashes | notes | test |
  std::ostringstream row;
  row << "RELIABILITY: | " << what << " | " << s.sent << " / " << s.answered << " | " << s.errors << " | "
      << ms << " ms | " << crashes << " | " << notes << " | `" << test << "` |\n";
  std::cout << row.str() << std::flush;
}

long rss_kb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  return 0;
}

}  // namespace rg::test
