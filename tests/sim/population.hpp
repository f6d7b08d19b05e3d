// The simulated world of rg_sim: legitimate senders (SASL users with skewed daily volumes and a day/night
// cycle; mobile users, travellers and growing users (issue 12); a newsletter with an announced spike; a web
// application on 127.0.0.1) and the incidents (a compromised login bursting, a PHP loop, compromised logins
// sending at a patient steady pace, a slow local loop), as one time-ordered list of messages in simulated
// time, deterministic from a seed. No sockets and no clock here: replay.hpp sends the list to a daemon.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::sim {

inline constexpr double hour_s = 3600;
inline constexpr double day_s = 24 * hour_s;

// The model's knobs (README.md "Model" explains each; the defaults are the model, not tuning).
struct model_options {
  std::uint64_t seed = 1;
  unsigned users = 400;             // SASL logins besides the newsletter
  double median_daily = 12;         // log-normal daily volume per user: median ...
  double sigma_daily = 1.1;         // ... and sigma of its log; clamped to [min_daily, max_daily]
  double min_daily = 2, max_daily = 400;
  unsigned warmup_days = 2;         // ordinary days before the incident day (the last simulated day)
  double local_app_daily = 30;      // the legitimate web application on 127.0.0.1
  double newsletter_daily = 4;      // the newsletter login's ordinary traffic
  double newsletter_hour = 14;      // announced spike on the incident day: start (hour of day) ...
  unsigned newsletter_messages = 3000;  // ... size ...
  double newsletter_hours = 2;      // ... and length
  double incident_a_hour = 10.5;    // compromised login: start on the incident day ...
  double incident_a_owner_daily = 20;  // ... of the ordinary user whose volume is nearest this ...
  unsigned incident_a_messages = 600;  // ... sending this many messages ...
  double incident_a_minutes = 30;   // ... within this many minutes ...
  unsigned incident_a_ips = 40;     // ... from this many client addresses (1..250)
  double incident_b_hour = 16;      // PHP loop on 127.0.0.1: start on the incident day ...
  unsigned incident_b_messages = 1000;  // ... messages ...
  double incident_b_minutes = 40;   // ... within this many minutes
  double incident_c_hour = 9;       // patient compromised login: start on the incident day ...
  double incident_c_owner_daily = 5;   // ... of the ordinary user whose volume is nearest this ...
  unsigned incident_c_messages = 384;  // ... sending this many messages at a steady pace ...
  double incident_c_hours = 8;      // ... over this many hours
  // Issue 12: drawn after everything above, from a second stream derived from the seed, so a seed keeps
  // the users, incidents A-C and their messages of the population above.
  double mobile_share = 0.05;       // logins on a phone: addresses from a carrier's NAT or IPv6 pool
  double traveller_share = 0.03;    // logins on 3-4 networks: home, office, phone, hotel
  double growing_share = 0.03;      // logins whose volume grows steadily ...
  double growing_factor = 1.5;      // ... by this factor per day
  double incident_d1_hour = 9.5;    // patient thief on a new login (IPv4): start on the incident day ...
  double incident_d1_owner_daily = 10;  // ... of a login that normally sends this many a day ...
  double incident_d1_per_hour = 30;  // ... at this steady pace (under a burst floor of 40) ...
  double incident_d1_hours = 8;     // ... for this many hours, from one address
  double incident_d2_hour = 12;     // the same over IPv6: start ...
  double incident_d2_owner_daily = 6;
  double incident_d2_per_hour = 24;
  double incident_d2_hours = 6;
  double incident_e_hour = 1;       // slow local loop on 127.0.0.1: start on the last warm-up day ...
  double incident_e_per_minute = 4;  // ... this many messages a minute ...
  double incident_e_hours = 3;      // ... for this many hours
};

enum class sender_class : std::uint8_t { user, newsletter, local_app, php_script, mobile, traveller, growing };
const char* to_string(sender_class c);

struct sender_profile {
  sender_class cls = sender_class::user;
  std::string login;     // sasl_username; empty: unauthenticated (port 25 from 127.0.0.1)
  std::string address;   // envelope sender
  std::string helo;
  std::vector<std::string> ips;       // client addresses of its ordinary mail (fixed networks)
  double daily = 0;                   // mean ordinary messages per day (day 0; see growth)
  double growth = 1;                  // its volume is multiplied by this each day (growing users)
  // Mobile users and travellers: their phone's carrier (an index into the model's carrier list; -1: no
  // phone) and, for travellers, a hotel network on some days. population.cpp draws each session's address.
  int carrier = -1;
  double phone_share = 0;             // share of sessions sent from the phone
  double hotel_share = 0;             // travellers: share of sessions from the hotel (0: no hotel)
  double session_mean = 1.5;          // messages per session (phones send one at a time)
  std::vector<std::string> contacts;  // its usual recipients
};

struct incident_info {
  std::string id;           // "A", "B", "C", "D1", "D2", "E"
  std::string name;         // "compromised-login", "php-loop", "slow-login", ...
  std::string description;  // one line for the report
  std::uint32_t sender = 0; // index into population::senders
  double start = 0;         // simulated seconds
};

struct sim_message {
  double t = 0;                 // simulated seconds since day 0, 00:00
  std::uint32_t sender = 0;     // index into population::senders
  std::int16_t incident = -1;   // index into population::incidents; -1: legitimate
  // The owner's own mail sent after its login was compromised: neither legitimate traffic the targets
  // judge (a lock would rightly hold it) nor part of the attack. Counted apart.
  bool owner_mail = false;
  std::uint32_t size = 0;       // bytes, sent at END-OF-MESSAGE
  std::string client;           // client_address
  std::vector<std::string> rcpts;
};

struct population {
  model_options options;
  std::vector<sender_profile> senders;
  std::vector<incident_info> incidents;
  std::vector<sim_message> messages;  // ordered by t
  double end = 0;                      // simulated seconds: the end of the last day
};

population generate(const model_options& o);

// The busiest interval of `window` simulated seconds of one sender's legitimate messages (what an admin
// reads from last week's logs before writing limits) within [from, to).
struct peak {
  std::uint32_t messages = 0;
  std::uint32_t recipients = 0;  // the busiest interval by recipients (may be another interval)
};
peak busiest(const population& p, std::uint32_t sender, double window, double from, double to);
// The most distinct client addresses (IPv6: per /64, as ipv6_prefix = 64 counts them) one sender's
// legitimate messages came from within any `window` simulated seconds: what client_ips:N/W sees of it.
std::uint32_t busiest_addresses(const population& p, std::uint32_t sender, double window);

}  // namespace rg::sim
