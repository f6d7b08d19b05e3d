// Generates the simulated population and its incidents (see population.hpp). One std::mt19937_64 drives
// every draw in a fixed order, so a seed gives the same messages on every run of the same build.
#include "population.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>

namespace rg::sim {

namespace {

using rng_type = std::mt19937_64;

// Relative sending activity per hour of the day (office hours, a lunch dip, quiet nights); normalized to a
// mean of 1 in diurnal_weight().
constexpr std::array<double, 24> diurnal_shape = {0.15, 0.10, 0.08, 0.07, 0.08, 0.15, 0.40, 0.90,
                                                  1.60, 2.00, 2.10, 2.00, 1.50, 1.70, 2.00, 1.90,
                                                  1.70, 1.40, 1.00, 0.80, 0.70, 0.60, 0.40, 0.25};

double diurnal_weight(unsigned hour) {
  double sum = 0;
  for (double w : diurnal_shape) sum += w;
  return diurnal_shape[hour % 24] * 24 / sum;
}

// Recipient domains of ordinary mail: a few big providers take most (Zipf over 300 domains).
constexpr unsigned common_domains = 300;

std::discrete_distribution<unsigned> zipf(std::size_t n) {
  std::vector<double> w(n);
  for (std::size_t i = 0; i < n; ++i) w[i] = 1.0 / static_cast<double>(i + 1);
  return std::discrete_distribution<unsigned>(w.begin(), w.end());
}

// Recipients per ordinary message: 1-3 mostly, now and then a small group.
unsigned recipient_count(rng_type& rng) {
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  if (u < 0.72) return 1;
  if (u < 0.89) return 2;
  if (u < 0.96) return 3;
  return std::uniform_int_distribution<unsigned>(4, 10)(rng);
}

std::uint32_t message_size(rng_type& rng) {
  const double s = std::lognormal_distribution<double>(std::log(20000.0), 1.0)(rng);
  return static_cast<std::uint32_t>(std::clamp(s, 500.0, 20e6));
}

std::string ip4(unsigned a, unsigned b, unsigned c, unsigned d) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a, b, c, d);
  return buf;
}

struct generator {
  const model_options& o;
  population& p;
  rng_type rng;
  std::uint64_t new_rcpt = 0;
  std::discrete_distribution<unsigned> domain = zipf(common_domains);

  std::string common_domain() { return "d" + std::to_string(domain(rng)) + ".example"; }

  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); }

  // The ordinary user whose volume is nearest `daily` (the first of equals), other than `taken`: an
  // incident's victim.
  std::uint32_t nearest_user(double daily, std::optional<std::uint32_t> taken = std::nullopt) const {
    auto dist = [&](std::uint32_t u) { return u == taken ? 1e9 : std::abs(p.senders[u].daily - daily); };
    std::uint32_t owner = 0;
    for (std::uint32_t u = 1; u < o.users; ++u)
      if (dist(u) < dist(owner)) owner = u;
    return owner;
  }

  // "login user123 (45/day)": how a compromised login's incident description begins.
  std::string login_text(std::uint32_t owner) const {
    const sender_profile& s = p.senders[owner];
    return "login " + s.login + " (" + std::to_string(std::lround(s.daily)) + "/day)";
  }

  // Records an incident; returns its index (sim_message::incident).
  std::int16_t add_incident(const incident_info& inc) {
    p.incidents.push_back(inc);
    return static_cast<std::int16_t>(p.incidents.size() - 1);
  }

  // A recipient never used before, at one of 100 000 rare domains: "<local>N@<domain>K.example".
  std::string fresh_rcpt(const char* local, const char* domain_name) {
    return local + std::to_string(++new_rcpt) + "@" + domain_name +
           std::to_string(std::uniform_int_distribution<unsigned>(0, 99999)(rng)) + ".example";
  }

  // The owner's own mail from the incident's start on belongs to it too (owner_mail).
  void claim_owner_mail(std::uint32_t owner, std::int16_t idx, double start) {
    for (auto& m : p.messages)
      if (m.sender == owner && m.incident < 0 && m.t >= start) {
        m.incident = idx;
        m.owner_mail = true;
      }
  }

  std::uint32_t add_sender(sender_profile s) {
    p.senders.push_back(std::move(s));
    return static_cast<std::uint32_t>(p.senders.size() - 1);
  }

  void make_contacts(sender_profile& s) {
    const auto n = static_cast<unsigned>(std::clamp(5 + 2 * s.daily, 5.0, 300.0));
    for (unsigned i = 0; i < n; ++i)
      s.contacts.push_back("c" + std::to_string(i) + "." + s.address.substr(0, s.address.find('@')) + "@" +
                           common_domain());
  }

  // Ordinary traffic: per day a gamma-distributed activity factor (mean 1), per hour a Poisson number of
  // sessions, each session 1 + geometric messages (mean 1.5) a few minutes apart.
  void ordinary_traffic(std::uint32_t sender, unsigned days, unsigned max_rcpts) {
    const sender_profile& s = p.senders[sender];
    auto contact = zipf(s.contacts.size());
    constexpr double mean_session = 1.5;
    for (unsigned d = 0; d < days; ++d) {
      const double day_factor = std::gamma_distribution<double>(4.0, 0.25)(rng);
      for (unsigned h = 0; h < 24; ++h) {
        const double sessions = s.daily * day_factor * diurnal_weight(h) / 24 / mean_session;
        const unsigned n = std::poisson_distribution<unsigned>(sessions)(rng);
        for (unsigned k = 0; k < n; ++k) {
          double t = d * day_s + h * hour_s + uniform(0, hour_s);
          const unsigned msgs = 1 + std::geometric_distribution<unsigned>(1 / mean_session)(rng);
          const std::string& ip = s.ips[std::uniform_int_distribution<std::size_t>(0, s.ips.size() - 1)(rng)];
          for (unsigned m = 0; m < msgs; ++m) {
            sim_message msg;
            msg.t = t;
            msg.sender = sender;
            msg.client = ip;
            msg.size = message_size(rng);
            const unsigned rc = std::min(recipient_count(rng), max_rcpts);
            for (unsigned r = 0; r < rc; ++r) {
              if (uniform(0, 1) < 0.1)  // someone new
                msg.rcpts.push_back("n" + std::to_string(++new_rcpt) + "@" + common_domain());
              else
                msg.rcpts.push_back(s.contacts[contact(rng)]);
            }
            p.messages.push_back(std::move(msg));
            t += std::exponential_distribution<double>(1 / 120.0)(rng);
          }
        }
      }
    }
  }

  void run() {
    p.options = o;
    const unsigned days = o.warmup_days + 1;
    const double incident_day = o.warmup_days * day_s;
    p.end = days * day_s;

    // SASL users: log-normal daily volumes, one or two client addresses (home, office) each.
    std::lognormal_distribution<double> volume(std::log(o.median_daily), o.sigma_daily);
    for (unsigned u = 0; u < o.users; ++u) {
      sender_profile s;
      char name[16];
      std::snprintf(name, sizeof name, "user%03u", u);
      s.login = name;
      s.address = s.login + "@example.com";
      s.helo = "pc" + std::to_string(u) + ".example.net";
      s.daily = std::clamp(volume(rng), o.min_daily, o.max_daily);
      const unsigned n_ips = uniform(0, 1) < 0.4 ? 2 : 1;
      for (unsigned i = 0; i < n_ips; ++i)  // 198.18.0.0/15, the benchmarking range
        s.ips.push_back(ip4(198, 18 + (u >> 8) % 2, u % 256, i + 1));
      make_contacts(s);
      ordinary_traffic(add_sender(std::move(s)), days, 10);
    }

    // The newsletter login: a few ordinary messages a day, and the announced spike (one recipient each,
    // subscribers at the big providers, sent at a steady pace by a mailing program).
    {
      sender_profile s;
      s.cls = sender_class::newsletter;
      s.login = "newsletter";
      s.address = "newsletter@example.com";
      s.helo = "lists.example.com";
      s.ips = {"198.19.255.10"};
      s.daily = o.newsletter_daily;
      make_contacts(s);
      const auto id = add_sender(std::move(s));
      ordinary_traffic(id, days, 10);
      const double start = incident_day + o.newsletter_hour * hour_s;
      const double step = o.newsletter_hours * hour_s / std::max(1u, o.newsletter_messages);
      for (unsigned i = 0; i < o.newsletter_messages; ++i) {
        sim_message msg;
        msg.t = start + i * step + uniform(0, step);
        msg.sender = id;
        msg.client = "198.19.255.10";
        msg.size = 40000;
        msg.rcpts.push_back("sub" + std::to_string(i) + "@" + common_domain());
        p.messages.push_back(std::move(msg));
      }
    }

    // The legitimate web application on 127.0.0.1 (order confirmations, contact forms): port 25, no login.
    {
      sender_profile s;
      s.cls = sender_class::local_app;
      s.address = "wordpress@www.example.com";
      s.helo = "www.example.com";
      s.ips = {"127.0.0.1"};
      s.daily = o.local_app_daily;
      make_contacts(s);
      ordinary_traffic(add_sender(std::move(s)), days, 1);
    }

    // Incident A: the ordinary user whose volume is nearest incident_a_owner_daily is compromised: a burst
    // to fresh addresses at hundreds of domains, from a botnet's addresses.
    {
      const std::uint32_t owner = nearest_user(o.incident_a_owner_daily);
      std::string what = login_text(owner) + " sends " + std::to_string(o.incident_a_messages) +
                         " messages in " + std::to_string(std::lround(o.incident_a_minutes)) + " min from " +
                         std::to_string(o.incident_a_ips) + " addresses";
      const incident_info inc{.id = "A", .name = "compromised-login", .description = std::move(what),
                              .sender = owner, .start = incident_day + o.incident_a_hour * hour_s};
      const auto idx = add_incident(inc);
      const unsigned ips = std::clamp(o.incident_a_ips, 1u, 250u);
      for (unsigned i = 0; i < o.incident_a_messages; ++i) {
        sim_message msg;
        msg.t = inc.start + uniform(0, o.incident_a_minutes * 60);
        msg.sender = owner;
        msg.incident = idx;
        msg.client = ip4(203, 0, 113, 1 + std::uniform_int_distribution<unsigned>(0, ips - 1)(rng));
        msg.size = 3000;
        const double u = uniform(0, 1);
        const unsigned rc = u < 0.5 ? 1 : u < 0.8 ? 2 : 3;
        for (unsigned r = 0; r < rc; ++r) msg.rcpts.push_back(fresh_rcpt("x", "v"));
        p.messages.push_back(std::move(msg));
      }
      claim_owner_mail(owner, idx, inc.start);
    }

    // Incident B: a PHP script on the web server loops, one message every few seconds, port 25, no login.
    {
      sender_profile s;
      s.cls = sender_class::php_script;
      s.address = "www-data@www.example.com";
      s.helo = "www.example.com";
      s.ips = {"127.0.0.1"};
      const auto id = add_sender(std::move(s));
      incident_info inc;
      inc.id = "B";
      inc.name = "php-loop";
      inc.sender = id;
      inc.start = incident_day + o.incident_b_hour * hour_s;
      inc.description = "www-data@www.example.com on 127.0.0.1 sends " + std::to_string(o.incident_b_messages) +
                        " messages in " + std::to_string(std::lround(o.incident_b_minutes)) + " min";
      const auto idx = add_incident(inc);
      const double step = o.incident_b_minutes * 60 / std::max(1u, o.incident_b_messages);
      for (unsigned i = 0; i < o.incident_b_messages; ++i) {
        sim_message msg;
        msg.t = inc.start + i * step + uniform(0, step / 2);
        msg.sender = id;
        msg.incident = idx;
        msg.client = "127.0.0.1";
        msg.size = 2000;
        msg.rcpts.push_back("r" + std::to_string(++new_rcpt) + "@" + common_domain());
        p.messages.push_back(std::move(msg));
      }
    }

    // Incident C, drawn last so the others stay as they were: another ordinary user's login (nearest
    // incident_c_owner_daily) used by a patient sender that keeps a steady pace below any limit set above
    // the heaviest legitimate logins (48 an hour, one recipient each, fresh domains, one address).
    {
      const std::uint32_t owner = nearest_user(o.incident_c_owner_daily, p.incidents[0].sender);
      std::string what = login_text(owner) + " sends " + std::to_string(o.incident_c_messages) +
                         " messages evenly over " + std::to_string(std::lround(o.incident_c_hours)) +
                         " h from 1 address";
      const incident_info inc{.id = "C", .name = "slow-login", .description = std::move(what),
                              .sender = owner, .start = incident_day + o.incident_c_hour * hour_s};
      const auto idx = add_incident(inc);
      const double step = o.incident_c_hours * hour_s / std::max(1u, o.incident_c_messages);
      for (unsigned i = 0; i < o.incident_c_messages; ++i) {
        sim_message msg;
        msg.t = inc.start + i * step + uniform(0, step / 2);
        msg.sender = owner;
        msg.incident = idx;
        msg.client = "203.0.113.200";
        msg.size = 3000;
        msg.rcpts.push_back(fresh_rcpt("y", "w"));
        p.messages.push_back(std::move(msg));
      }
      claim_owner_mail(owner, idx, inc.start);
    }

    std::erase_if(p.messages, [&](const sim_message& m) { return m.t >= p.end; });
    std::stable_sort(p.messages.begin(), p.messages.end(),
                     [](const sim_message& a, const sim_message& b) { return a.t < b.t; });
  }
};

}  // namespace

const char* to_string(sender_class c) {
  switch (c) {
    case sender_class::user: return "users";
    case sender_class::newsletter: return "newsletter";
    case sender_class::local_app: return "local-app";
    case sender_class::php_script: return "php-script";
  }
  return "?";
}

population generate(const model_options& o) {
  population p;
  generator g{o, p, rng_type(o.seed)};
  g.run();
  return p;
}

peak busiest(const population& p, std::uint32_t sender, double window, double from, double to) {
  std::vector<std::pair<double, std::uint32_t>> ev;  // time, recipients
  for (const auto& m : p.messages)
    if (m.sender == sender && m.incident < 0 && m.t >= from && m.t < to)
      ev.emplace_back(m.t, static_cast<std::uint32_t>(m.rcpts.size()));
  peak best;
  std::size_t lo = 0;
  std::uint32_t rcpts = 0;
  for (std::size_t hi = 0; hi < ev.size(); ++hi) {
    rcpts += ev[hi].second;
    while (ev[hi].first - ev[lo].first >= window) rcpts -= ev[lo++].second;
    best.messages = std::max(best.messages, static_cast<std::uint32_t>(hi - lo + 1));
    best.recipients = std::max(best.recipients, rcpts);
  }
  return best;
}

}  // namespace rg::sim
