// rateguardctl's tables against golden files (tests/unit/golden/ctl_*.in -> .ref). After a deliberate
// change: RG_UPDATE_GOLDEN=1 build/tests/unit_tests '[golden]' rewrites the .ref files; review git diff and
// copy changed ones into README (test_readme_examples.cpp checks it). A .in is the command line as an
// operator types it ("$ rateguardctl status KEY", options and a trailing "# comment" allowed) followed by the
// daemon's JSON answer to it (what `rateguardctl --json` prints, recorded from a real rateguardd, indented
// here for review); the .ref is what rateguardctl prints for that answer. README's examples are these .ref
// files (test_readme_examples.cpp).
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <sstream>

#include "ctl_format.hpp"
#include "golden.hpp"

namespace {

// The command word of "$ rateguardctl [-c FILE] [--json] [--socket PATH] COMMAND ...".
std::string command_of(const std::string& line) {
  std::istringstream in(line);
  std::string w;
  in >> w;
  REQUIRE(w == "$");
  in >> w;
  REQUIRE(w == "rateguardctl");
  while (in >> w) {
    if (w == "-c" || w == "--config" || w == "--socket")
      in >> w;
    else if (w[0] != '-')
      return w;
  }
  FAIL("no command in " << line);
  return {};
}

}  // namespace

TEST_CASE("rateguardctl tables match their golden files", "[golden][ctl]") {
  const auto inputs = rg::test::golden_inputs("ctl_");
  REQUIRE_FALSE(inputs.empty());
  for (const auto& in : inputs) {
    DYNAMIC_SECTION(in.filename().string()) {
      const std::string text = rg::test::read_text(in);
      const auto nl = text.find('\n');
      REQUIRE(nl != std::string::npos);
      const std::string command = command_of(text.substr(0, nl));
      boost::system::error_code ec;
      const auto answer = boost::json::parse(text.substr(nl + 1), ec);
      REQUIRE_FALSE(ec);
      REQUIRE(answer.is_object());
      std::ostringstream out;
      rg::print_answer(command, answer.as_object(), out);
      auto ref = in;
      rg::test::check_golden(ref.replace_extension(".ref"), out.str());
    }
  }
}

TEST_CASE("the stats line is the stats answer on one line, anvil style", "[ctl][stats]") {
  const std::string text = rg::test::read_text(std::filesystem::path(RG_GOLDEN_DIR) / "ctl_stats.in");
  const auto answer = boost::json::parse(text.substr(text.find('\n') + 1)).as_object();
  CHECK(rg::stats_line(answer) ==
        "statistics: since 2026-11-23T13:00:00Z requests=18342 defer=41 hold=23 none=18278 peak_connections=31 "
        "store_p99=0.25ms locks_set=1 holds=9 top_1h=sasl_username:alice:23,sasl_username:bob:7");
  boost::json::object down = answer;
  down.erase("top");
  down["top_error"] = "redis timeout";
  down["store_p99_s"] = 1e10;
  CHECK(rg::stats_line(down).ends_with(" store_p99=>2.5s locks_set=1 holds=9 top_1h=? (redis timeout)"));
}
