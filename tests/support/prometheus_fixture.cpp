// The Prometheus fixture: config and data in a private temp dir, prometheus forked and exec'd with its
// output in a file; readiness and queries over its HTTP API with Beast; teardown by PID, SIGTERM then
// SIGKILL after a bounded wait. Tests only.
#include "prometheus_fixture.hpp"

#include "redis_fixture.hpp"  // free_loopback_port

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace rg::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

http_reply http_get(unsigned short port, const std::string& target, std::chrono::milliseconds timeout) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  http::response<http::string_body> res;
  http_reply out;
  stream.expires_after(timeout);  // the whole exchange: connect, write, read
  stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                       [&](beast::error_code ec) {
                         if (ec) return;
                         http::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
                           if (wec) return;
                           http::async_read(stream, buffer, res, [&](beast::error_code rec, std::size_t) {
                             if (rec) return;
                             out.status = static_cast<int>(res.result_int());
                             out.content_type = std::string(res[http::field::content_type]);
                             out.body = std::move(res.body());
                           });
                         });
                       });
  io.run();
  return out;
}

namespace {
std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}
}  // namespace

prometheus_process::prometheus_process(const std::vector<std::string>& targets, const std::vector<std::string>& rule_files) {
  char tmpl[] = "/tmp/rg-prometheus-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  port_ = static_cast<unsigned short>(free_loopback_port());
  {
    std::ofstream c(dir_ + "/prometheus.yml");
    c << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n";
    if (!rule_files.empty()) {
      c << "rule_files:\n";
      for (const auto& r : rule_files) c << "  - '" << r << "'\n";
    }
    c << "scrape_configs:\n  - job_name: rateguard\n    static_configs:\n      - targets: [";
    for (std::size_t i = 0; i < targets.size(); ++i) c << (i ? ", " : "") << "'" << targets[i] << "'";
    c << "]\n";
  }
  const std::string config = "--config.file=" + dir_ + "/prometheus.yml";
  const std::string data = "--storage.tsdb.path=" + dir_ + "/data";
  const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = ::open((dir_ + "/prometheus.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execlp("prometheus", "prometheus", config.c_str(), data.c_str(), listen.c_str(), "--log.level=warn",
           static_cast<char*>(nullptr));
    _exit(127);
  }
  // Ready within seconds on an idle machine; a minute for a busy one.
  for (int i = 0; i < 600; ++i) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("prometheus exited at start (is Debian's prometheus installed?): " + log());
    }
    if (http_get(port_, "/-/ready", std::chrono::seconds(2)).status == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("prometheus not ready within 60 s: " + log());
}

prometheus_process::~prometheus_process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int st = 0;
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = waitpid(pid_, &st, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!gone) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &st, 0);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string prometheus_process::log() const {
  std::ifstream f(dir_ + "/prometheus.log");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::pair<std::string, double>> prometheus_process::query(const std::string& promql) const {
  std::vector<std::pair<std::string, double>> out;
  const auto r = http_get(port_, "/api/v1/query?query=" + url_encode(promql));
  if (r.status != 200) return out;
  boost::system::error_code ec;
  const auto doc = boost::json::parse(r.body, ec);
  if (ec || !doc.is_object()) return out;
  const auto* data = doc.as_object().if_contains("data");
  if (!data || !data->is_object()) return out;
  const auto* result = data->as_object().if_contains("result");
  if (!result || !result->is_array()) return out;
  for (const auto& e : result->as_array()) {
    const auto& o = e.as_object();
    std::string labels;
    for (const auto& [k, v] : o.at("metric").as_object()) {  // Prometheus sorts them
      if (k == "__name__") continue;
      labels += std::string(labels.empty() ? "" : ",") + std::string(k) + "=\"" + std::string(v.as_string()) + "\"";
    }
    const auto& value = o.at("value").as_array();  // [time, "value"]
    out.emplace_back("{" + labels + "}", std::stod(std::string(value.at(1).as_string())));
  }
  return out;
}

}  // namespace rg::test
