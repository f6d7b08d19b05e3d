// For every setting of rateguard.conf, a valid value other than its default (and the lines it needs beside it),
// so the reload tests change each setting in turn. A setting added to the table without an entry here fails
// those tests (tests/unit/test_config.cpp, tests/integration/test_daemon.cpp). Header only.
#pragma once

#include <map>
#include <string>

namespace rg::test {

struct setting_example {
  std::string value;
  std::string also;  // other "name = value" lines the value needs (e.g. group needs user), or empty
};

// `limits_file`: an existing limits file other than the running one.
inline std::map<std::string, setting_example> setting_examples(const std::string& limits_file) {
  return {
      {"listen", {"unix:/tmp/rg-example-listen.sock", ""}},
      {"milter", {"inet:127.0.0.1:1", ""}},
      {"milter_local_daemon_name", {"other-pickup", ""}},
      {"unix_socket_mode", {"0600", ""}},
      {"unix_socket_owner", {"root", ""}},
      {"user", {"nobody", ""}},
      {"group", {"nogroup", "user = nobody\n"}},
      {"allow_root", {"yes", ""}},
      {"allow_clients", {"192.0.2.0/24", ""}},
      {"max_connections", {"77", ""}},
      {"idle_timeout", {"77s", ""}},
      {"request_timeout", {"7s", ""}},
      {"shutdown_timeout", {"7s", ""}},
      {"limits", {limits_file, ""}},
      {"mode", {"dry-run", ""}},
      {"ipv6_prefix", {"56", ""}},
      {"lock_time", {"7h", ""}},
      {"baseline_half_life", {"2d", ""}},
      {"baseline_warmup", {"2h", ""}},
      {"familiar_time", {"3d", ""}},
      {"network_ipv4_prefix", {"20", ""}},
      {"network_ipv6_prefix", {"40", ""}},
      {"control_socket", {"/tmp/rg-example-control", ""}},
      {"store", {"redis", ""}},
      {"redis", {"127.0.0.1:1", ""}},
      {"redis_username", {"someone", "redis_password_file = /nonexistent/secret\n"}},
      {"redis_password_file", {"/nonexistent/secret", ""}},
      {"redis_db", {"3", ""}},
      {"redis_timeout", {"250ms", ""}},
      {"redis_max_pending", {"77", ""}},
      {"redis_prefix", {"example:", ""}},
      {"sentinels", {"127.0.0.1:26379, 127.0.0.1:26380", "sentinel_master = example\n"}},
      {"sentinel_master", {"example", ""}},
      {"sentinel_username", {"someone", "sentinel_password_file = /nonexistent/secret\n"}},
      {"sentinel_password_file", {"/nonexistent/secret", ""}},
      {"redis_tls", {"yes", "redis_tls_ca_file = /nonexistent/ca.pem\n"}},
      {"redis_tls_ca_file", {"/nonexistent/ca.pem", ""}},
      {"redis_tls_cert_file", {"/nonexistent/cert.pem", "redis_tls_key_file = /nonexistent/key.pem\n"}},
      {"redis_tls_key_file", {"/nonexistent/key.pem", "redis_tls_cert_file = /nonexistent/cert.pem\n"}},
      {"redis_tls_server_name", {"redis.example", ""}},
      {"on_store_error", {"defer", ""}},
      {"memory_max_keys", {"5000", ""}},
      {"hold_journal_max", {"77", ""}},
      {"hold_journal_age", {"2d", ""}},
      {"metrics", {"inet:127.0.0.1:1", ""}},
      {"hold_queue_dir", {"/tmp/rg-example-hold", ""}},
      {"stats_interval", {"7m", ""}},
      {"notify", {"postmaster@example.com", ""}},
      {"notify_command", {"/bin/true", ""}},
      {"sendmail_path", {"/usr/lib/sendmail", ""}},
      {"notify_rate_limit", {"77", ""}},
      {"notify_delay", {"7s", ""}},
      {"log_target", {"syslog", ""}},
      {"log_format", {"json", ""}},
      {"log_level", {"warning", ""}},
      {"syslog_facility", {"local3", ""}},
      {"syslog_name", {"rg-example", ""}},
  };
}

}  // namespace rg::test
