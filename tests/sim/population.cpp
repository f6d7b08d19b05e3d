// Generates the simulated population and its incidents (see population.hpp). One std::mt19937_64 drives
// every draw in a fixed order, so a seed gives the same messages on every run of the same build; what issue
// 12 added (mobile users, travellers, growing users, incidents D1, D2, E) is drawn afterwards from a second
// std::mt19937_64 derived from the seed, so the first stream's draws, and with them the population of
// issue 4 (users, newsletter, web application, incidents A-C), are the same as before at every seed.
#include "population.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
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

// An IPv6 address in the documentation range 2001:db8::/32: the /64 2001:db8:N1:N2::/64 (net = N1 << 16 |
// N2) and an interface identifier.
std::string ip6(std::uint32_t net, std::uint64_t iid) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "2001:db8:%x:%x:%x:%x:%x:%x", static_cast<unsigned>(net >> 16),
                static_cast<unsigned>(net & 0xffff), static_cast<unsigned>(iid >> 48 & 0xffff),
                static_cast<unsigned>(iid >> 32 & 0xffff), static_cast<unsigned>(iid >> 16 & 0xffff),
                static_cast<unsigned>(iid & 0xffff));
  return buf;
}

// A fixed network of a login whose address changes within it: "v6:N" is the /64 ip6(N, ...), where the
// host picks a new privacy address every day (RFC 8981); counted per /64 (ipv6_prefix = 64) it is one client.
std::string v6_home(std::uint32_t net) { return "v6:" + std::to_string(net); }

// The phone carriers of mobile users and travellers (issue 12). What a mail server sees of a phone is the
// carrier's public side: a NAT pool for IPv4 (RFC 6598's 100.64.0.0/10 stands in for the carriers' public
// pools, so no real network is named), a /64 for IPv6 with a privacy address (RFC 8981) in it.
enum class rotation : std::uint8_t {
  v4_per_session,     // paired pooling: one address for a session's connections, another next session
  v4_per_connection,  // arbitrary pooling: every connection (a phone sends each message on its own) may
                      // leave from another address of the pool
  v6_stable_prefix,   // the /64 is kept while the phone stays attached (a new one after 1 session in 5);
                      // a new privacy interface ID every session
  v6_prefix_per_session,  // a new /64 from the carrier's /40 every session (a new PDP context)
};

struct carrier_pool {
  const char* name;
  rotation how;
  std::uint32_t base;  // IPv4: the pool's first address; IPv6: the /40's high 24 bits below 2001:db8
  std::uint32_t size;  // IPv4: addresses in the pool
};

constexpr std::array<carrier_pool, 5> carriers = {{
    {"carrier-a", rotation::v4_per_session, 100u << 24 | 64u << 16, 1u << 16},       // 100.64.0.0/16
    {"carrier-b", rotation::v4_per_session, 100u << 24 | 80u << 16, 1u << 12},       // 100.80.0.0/20
    {"carrier-c", rotation::v4_per_connection, 100u << 24 | 96u << 16, 1u << 14},    // 100.96.0.0/18
    {"carrier-v6a", rotation::v6_stable_prefix, 0xa000, 0},                         // 2001:db8:a000::/40
    {"carrier-v6b", rotation::v6_prefix_per_session, 0xb000, 0},                    // 2001:db8:b000::/40
}};

std::string fmt_rate(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", r);
  return buf;
}

std::string ip4_of(std::uint32_t a) { return ip4(a >> 24, a >> 16 & 0xff, a >> 8 & 0xff, a & 0xff); }

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
    const bool daily_address = std::any_of(s.ips.begin(), s.ips.end(), [](const std::string& a) { return a.starts_with("v6:"); });
    if (s.carrier >= 0 || s.hotel_share > 0 || s.growth != 1 || s.session_mean != 1.5 || daily_address) {
      roaming_traffic(sender, days, max_rcpts);
      return;
    }
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
            add_recipients(msg, s, contact, max_rcpts);
            p.messages.push_back(std::move(msg));
            t += std::exponential_distribution<double>(1 / 120.0)(rng);
          }
        }
      }
    }
  }

  void add_recipients(sim_message& msg, const sender_profile& s, std::discrete_distribution<unsigned>& contact,
                      unsigned max_rcpts) {
    const unsigned rc = std::min(recipient_count(rng), max_rcpts);
    for (unsigned r = 0; r < rc; ++r) {
      if (uniform(0, 1) < 0.1)  // someone new
        msg.rcpts.push_back("n" + std::to_string(++new_rcpt) + "@" + common_domain());
      else
        msg.rcpts.push_back(s.contacts[contact(rng)]);
    }
  }

  // Issue 12's logins (second stream only): the same sessions as ordinary_traffic, with a volume that may
  // grow by s.growth a day, s.session_mean messages a session, and each session's address drawn from the
  // sender's networks: its fixed ones (home, office), its phone's carrier (s.phone_share of the sessions),
  // a hotel (s.hotel_share; one address a day, as a hotel's NAT gives).
  void roaming_traffic(std::uint32_t sender, unsigned days, unsigned max_rcpts) {
    const sender_profile& s = p.senders[sender];
    auto contact = zipf(s.contacts.size());
    const carrier_pool* phone = s.carrier >= 0 ? &carriers[static_cast<std::size_t>(s.carrier)] : nullptr;
    auto u32 = [&](std::uint32_t n) { return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(rng); };
    auto iid = [&] { return std::uniform_int_distribution<std::uint64_t>(1, ~std::uint64_t{0})(rng); };
    auto v6_net = [&] {  // a /64 of the carrier's /40: 24 random bits after its 2001:db8:XX00::/40
      const std::uint32_t x = u32(1u << 24);
      return (phone->base | x >> 16) << 16 | (x & 0xffff);
    };
    std::uint32_t attached = phone && phone->how == rotation::v6_stable_prefix ? v6_net() : 0;
    auto phone_address = [&]() -> std::string {
      switch (phone->how) {
        case rotation::v4_per_session:
        case rotation::v4_per_connection: return ip4_of(phone->base + u32(phone->size));
        case rotation::v6_stable_prefix:
          if (uniform(0, 1) < 0.2) attached = v6_net();
          return ip6(attached, iid());
        case rotation::v6_prefix_per_session: return ip6(v6_net(), iid());
      }
      return {};
    };
    double volume = s.daily;
    for (unsigned d = 0; d < days; ++d, volume *= s.growth) {
      const double day_factor = std::gamma_distribution<double>(4.0, 0.25)(rng);
      // The day's fixed addresses: an IPv6 home network gets a new privacy interface ID every day.
      std::vector<std::string> fixed = s.ips;
      for (auto& a : fixed)
        if (a.starts_with("v6:")) a = ip6(static_cast<std::uint32_t>(std::stoul(a.substr(3))), iid());
      const std::string hotel = ip4(198, 51, 100, 128 + u32(127));
      for (unsigned h = 0; h < 24; ++h) {
        const double sessions = volume * day_factor * diurnal_weight(h) / 24 / s.session_mean;
        const unsigned n = std::poisson_distribution<unsigned>(sessions)(rng);
        for (unsigned k = 0; k < n; ++k) {
          double t = d * day_s + h * hour_s + uniform(0, hour_s);
          const unsigned msgs = 1 + std::geometric_distribution<unsigned>(1 / s.session_mean)(rng);
          const double where = uniform(0, 1);
          const bool on_phone = phone && where < s.phone_share;
          std::string ip = on_phone                                 ? phone_address()
                           : where < s.phone_share + s.hotel_share ? hotel
                                                                    : fixed[u32(static_cast<std::uint32_t>(fixed.size()))];
          for (unsigned m = 0; m < msgs; ++m) {
            if (m > 0 && on_phone && phone->how == rotation::v4_per_connection) ip = phone_address();
            sim_message msg;
            msg.t = t;
            msg.sender = sender;
            msg.client = ip;
            msg.size = message_size(rng);
            add_recipients(msg, s, contact, max_rcpts);
            p.messages.push_back(std::move(msg));
            t += std::exponential_distribution<double>(1 / 120.0)(rng);
          }
        }
      }
    }
  }

  // A login of issue 12's population: name, log-normal volume as for the ordinary users, contacts, and
  // one or two fixed networks (home, office): 1 in 3 of them IPv6 (a /64 of 2001:db8:c000::/40 with a daily
  // privacy address), the others 192.0.2.0/24 (home) and 198.51.100.0/25 (office).
  sender_profile new_login(sender_class cls, const std::string& login, unsigned n_fixed) {
    sender_profile s;
    s.cls = cls;
    s.login = login;
    s.address = login + "@example.com";
    s.helo = login + ".example.net";
    std::lognormal_distribution<double> volume(std::log(o.median_daily), o.sigma_daily);
    s.daily = std::clamp(volume(rng), o.min_daily, o.max_daily);
    for (unsigned i = 0; i < n_fixed; ++i) {
      const auto k = static_cast<unsigned>(p.senders.size());
      if (uniform(0, 1) < 1.0 / 3)
        s.ips.push_back(v6_home(0xc000u << 16 | std::uniform_int_distribution<std::uint32_t>(0, (1u << 24) - 1)(rng)));
      else
        s.ips.push_back(i == 0 ? ip4(192, 0, 2, 1 + k % 254) : ip4(198, 51, 100, 1 + k % 127));
    }
    make_contacts(s);
    return s;
  }

  // Issue 12: logins with the traits an independent replay found the rules of issue 4 tuned to, and the
  // incidents that stay under static thresholds. From a second stream, after everything else.
  void issue12(unsigned days, double incident_day) {
    std::seed_seq second{o.seed, std::uint64_t{12}};  // 12: the issue; any fixed value would do
    rng.seed(second);
    auto share = [&](double f) { return static_cast<unsigned>(std::lround(f * o.users)); };
    auto carrier = [&] { return static_cast<int>(std::uniform_int_distribution<std::size_t>(0, carriers.size() - 1)(rng)); };
    char name[24];

    // Mobile users: a phone for 4 sessions in 5 (home Wi-Fi for the rest); a phone sends a message at a time.
    for (unsigned i = 0; i < share(o.mobile_share); ++i) {
      std::snprintf(name, sizeof name, "mobile%03u", i);
      sender_profile s = new_login(sender_class::mobile, name, 1);
      s.carrier = carrier();
      s.phone_share = 0.8;
      s.session_mean = 1.1;
      ordinary_traffic(add_sender(std::move(s)), days, 10);
    }
    // Travellers: home and office, a phone for a quarter of the sessions, and (half of them) a hotel for
    // one session in ten: three or four networks.
    for (unsigned i = 0; i < share(o.traveller_share); ++i) {
      std::snprintf(name, sizeof name, "travel%03u", i);
      sender_profile s = new_login(sender_class::traveller, name, 2);
      s.carrier = carrier();
      s.phone_share = 0.25;
      s.hotel_share = uniform(0, 1) < 0.5 ? 0.1 : 0;
      ordinary_traffic(add_sender(std::move(s)), days, 10);
    }
    // Growing users: a new project, a new sales role: the volume rises by growing_factor a day.
    for (unsigned i = 0; i < share(o.growing_share); ++i) {
      std::snprintf(name, sizeof name, "growing%03u", i);
      sender_profile s = new_login(sender_class::growing, name, uniform(0, 1) < 0.4 ? 2 : 1);
      s.growth = o.growing_factor;
      ordinary_traffic(add_sender(std::move(s)), days, 10);
    }

    // Incidents D1, D2: patient thieves on ordinary logins (new ones, numbered after the users, so no user of
    // issue 4 changes): a steady pace under a burst floor of 40 an hour and under every static threshold,
    // one recipient at a fresh domain each, from one address.
    struct patient {
      const char* id;
      const char* name;
      double owner_daily, hour, per_hour, hours;
      std::string thief_address;
      bool v6_owner;
    };
    const patient thieves[] = {
        {"D1", "patient-thief", o.incident_d1_owner_daily, o.incident_d1_hour, o.incident_d1_per_hour,
         o.incident_d1_hours, "203.0.113.210", false},
        {"D2", "patient-thief-v6", o.incident_d2_owner_daily, o.incident_d2_hour, o.incident_d2_per_hour,
         o.incident_d2_hours, "2001:db8:ff00:1::25", true},
    };
    for (const patient& d : thieves) {
      const unsigned u = o.users + static_cast<unsigned>(&d - thieves);  // numbered after the users
      std::snprintf(name, sizeof name, "user%03u", u);
      sender_profile s;
      s.login = name;
      s.address = s.login + "@example.com";
      s.helo = s.login + ".example.net";
      s.daily = d.owner_daily;
      if (d.v6_owner) s.ips = {v6_home(0xc0ff0000u | (u & 0xffff))};
      else s.ips = {ip4(198, 18 + (u >> 8) % 2, u % 256, 1), ip4(198, 18 + (u >> 8) % 2, u % 256, 2)};
      make_contacts(s);
      const auto owner = add_sender(std::move(s));
      ordinary_traffic(owner, days, 10);
      const auto n = static_cast<unsigned>(std::lround(d.per_hour * d.hours));
      const std::string what = login_text(owner) + " sends " + std::to_string(n) + " messages evenly over " +
                               std::to_string(std::lround(d.hours)) + " h (" + std::to_string(std::lround(d.per_hour)) +
                               "/h) from 1 address (" + d.thief_address + ")";
      const incident_info inc{.id = d.id, .name = d.name, .description = what, .sender = owner,
                              .start = incident_day + d.hour * hour_s};
      const auto idx = add_incident(inc);
      const double step = d.hours * hour_s / std::max(1u, n);
      for (unsigned i = 0; i < n; ++i) {
        sim_message msg;
        msg.t = inc.start + i * step + uniform(0, step / 2);
        msg.sender = owner;
        msg.incident = idx;
        msg.client = d.thief_address;
        msg.size = 3000;
        msg.rcpts.push_back(fresh_rcpt("z", "u"));
        p.messages.push_back(std::move(msg));
      }
      claim_owner_mail(owner, idx, inc.start);
    }

    // Incident E: a slow loop of a script on 127.0.0.1 (port 25, no login), a few messages a minute for
    // hours. Its envelope sender, drawn from the seed: the web application's own (a contact form abused by
    // a spammer) or one of its own (a script dropped on the server). It runs early on the last warm-up day:
    // the 127.0.0.1 key is shared with the web application and incident B, and what a loop leaves on it
    // (a day's counters, a lock of lock_time) is gone before B starts on the incident day; on the incident
    // day one of the two local incidents would be judged on what the other left.
    {
      const bool app_sender = uniform(0, 1) < 0.5;
      sender_profile s;
      s.cls = sender_class::php_script;
      s.address = app_sender ? "wordpress@www.example.com"
                             : "info" + std::to_string(std::uniform_int_distribution<unsigned>(100, 999)(rng)) +
                                   "@www.example.com";
      s.helo = "www.example.com";
      s.ips = {"127.0.0.1"};
      const auto id = add_sender(s);
      const unsigned day = o.warmup_days > 0 ? o.warmup_days - 1 : 0;
      const auto n = static_cast<unsigned>(std::lround(o.incident_e_per_minute * 60 * o.incident_e_hours));
      incident_info inc;
      inc.id = "E";
      inc.name = app_sender ? "slow-local-loop" : "slow-local-own-sender";
      inc.sender = id;
      inc.start = day * day_s + o.incident_e_hour * hour_s;
      inc.description = s.address + " on 127.0.0.1 (" + (app_sender ? "the web application's sender" : "a sender of its own") +
                        ") sends " + std::to_string(n) + " messages over " + std::to_string(std::lround(o.incident_e_hours)) +
                        " h (" + fmt_rate(o.incident_e_per_minute) + "/min) from day " + std::to_string(day) + " " +
                        std::to_string(std::lround(o.incident_e_hour)) + ":00";
      const auto idx = add_incident(inc);
      const double step = 60 / std::max(0.01, o.incident_e_per_minute);
      for (unsigned i = 0; i < n; ++i) {
        sim_message msg;
        msg.t = inc.start + i * step + uniform(0, step / 2);
        msg.sender = id;
        msg.incident = idx;
        msg.client = "127.0.0.1";
        msg.size = 2500;
        msg.rcpts.push_back(fresh_rcpt("e", "t"));
        p.messages.push_back(std::move(msg));
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

    issue12(days, incident_day);

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
    case sender_class::mobile: return "mobile";
    case sender_class::traveller: return "travellers";
    case sender_class::growing: return "growing";
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

std::uint32_t busiest_addresses(const population& p, std::uint32_t sender, double window) {
  std::vector<std::pair<double, std::string>> ev;
  for (const auto& m : p.messages) {
    if (m.sender != sender || m.incident >= 0) continue;
    std::string a = m.client;
    if (a.find(':') != std::string::npos) {  // the generator writes every legitimate IPv6 address in full
      std::size_t at = 0;
      for (int g = 0; g < 4 && at != std::string::npos; ++g) at = a.find(':', at + 1);
      a = a.substr(0, at);
    }
    ev.emplace_back(m.t, std::move(a));
  }
  std::map<std::string, unsigned> in_window;
  std::uint32_t best = 0;
  std::size_t lo = 0;
  for (std::size_t hi = 0; hi < ev.size(); ++hi) {
    ++in_window[ev[hi].second];
    for (; ev[hi].first - ev[lo].first >= window; ++lo) {
      const auto it = in_window.find(ev[lo].second);
      if (--it->second == 0) in_window.erase(it);
    }
    best = std::max(best, static_cast<std::uint32_t>(in_window.size()));
  }
  return best;
}

}  // namespace rg::sim
