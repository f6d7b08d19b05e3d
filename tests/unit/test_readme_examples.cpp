// README's examples of log lines and rateguardctl tables are the golden files: each fenced block right after
// a line "<!-- golden: tests/unit/golden/NAME.ref -->" must be that file byte for byte. A block may start
// with the command that produced it ("$ rateguardctl ..."), which must then be the first line of NAME.in.
// So a change in the output fails its golden test, and regenerating the golden file fails this one until
// README shows the new output too. The same marker naming a file under contrib/ (the Postfix recipe files
// README quotes) must show that file whole, so README and what contrib installs cannot drift apart.
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "golden.hpp"

namespace {

struct marked_block {
  std::string path;   // relative to the source tree, as written in the marker
  unsigned line = 0;  // of the marker in README.md
  std::string text;   // the block's lines, each ending in '\n'
};

std::vector<marked_block> marked_blocks(const std::string& readme) {
  std::vector<marked_block> out;
  std::istringstream in(readme);
  std::string line;
  unsigned n = 0;
  const std::string open = "<!-- golden: ", close = " -->";
  while (std::getline(in, line)) {
    ++n;
    if (line.rfind(open, 0) != 0) continue;
    INFO("README.md:" << n << ": " << line);
    REQUIRE(line.size() > open.size() + close.size());
    REQUIRE(line.compare(line.size() - close.size(), close.size(), close) == 0);
    marked_block b;
    b.path = line.substr(open.size(), line.size() - open.size() - close.size());
    b.line = n;
    REQUIRE(std::getline(in, line));
    ++n;
    REQUIRE(line.rfind("```", 0) == 0);  // the fence follows the marker directly
    bool closed = false;
    while (std::getline(in, line)) {
      ++n;
      if (line.rfind("```", 0) == 0) {
        closed = true;
        break;
      }
      b.text += line + "\n";
    }
    REQUIRE(closed);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace

TEST_CASE("README's log lines and rateguardctl tables are the golden files", "[golden][readme]") {
  const std::filesystem::path root = RG_SOURCE_DIR;
  const auto blocks = marked_blocks(rg::test::read_text(root / "README.md"));
  // The examples README shows: a change that drops a marker should be deliberate.
  unsigned decision = 0, ctl = 0, contrib = 0;
  for (const auto& b : blocks) {
    const std::filesystem::path ref = root / b.path;
    const std::string name = ref.filename().string();
    const bool is_contrib = b.path.rfind("contrib/", 0) == 0;
    decision += name.rfind("decision_", 0) == 0;
    ctl += name.rfind("ctl_", 0) == 0;
    contrib += is_contrib;
    DYNAMIC_SECTION("README.md:" << b.line << " " << b.path) {
      REQUIRE((is_contrib || ref.extension() == ".ref"));
      REQUIRE(std::filesystem::exists(ref));
      std::string text = b.text;
      if (!is_contrib && text.rfind("$ ", 0) == 0) {
        auto in = ref;
        const std::string input = rg::test::read_text(in.replace_extension(".in"));
        const auto nl = text.find('\n');
        INFO("the block's command must be the first line of " << in.string());
        CHECK(text.substr(0, nl + 1) == input.substr(0, input.find('\n') + 1));
        text.erase(0, nl + 1);
      }
      INFO("README.md:" << b.line << " shows " << b.path
                        << (is_contrib ? " (it must show the whole file: copy it into the block)"
                                       : " (copy the file into the block after regenerating it)"));
      CHECK(text == rg::test::read_text(ref));
    }
  }
  CHECK(decision >= 1);
  CHECK(ctl >= 4);
  CHECK(contrib >= 3);  // the pickup path: master.cf and main.cf lines, header_checks
}
