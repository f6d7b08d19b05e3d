// Golden files, Postfix's table-driven style: an input (NAME.in) rendered by the code under test must equal
// the expected output (NAME.ref) byte for byte. To accept a deliberate change, regenerate and review the
// diff:
//   RG_UPDATE_GOLDEN=1 build/tests/unit_tests '[golden]' && git diff tests/unit/golden
// Not a general test helper: only the file handling the golden tests share.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rg::test {

inline const std::filesystem::path golden_dir = RG_GOLDEN_DIR;

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The .in files of the golden directory whose names start with `prefix`, sorted.
inline std::vector<std::filesystem::path> golden_inputs(const std::string& prefix) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(golden_dir)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() == ".in" && name.rfind(prefix, 0) == 0) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline bool updating_golden() {
  const char* v = std::getenv("RG_UPDATE_GOLDEN");
  return v && std::string(v) == "1";
}

// Compares `actual` with the .ref file (or rewrites it under RG_UPDATE_GOLDEN=1). On a difference, names the
// first line that differs, so a long table does not have to be compared by eye.
inline void check_golden(const std::filesystem::path& ref, const std::string& actual) {
  if (updating_golden()) {
    std::ofstream(ref, std::ios::binary | std::ios::trunc) << actual;
    WARN("rewrote " << ref.string());
    return;
  }
  INFO("golden file " << ref.string() << " (RG_UPDATE_GOLDEN=1 rewrites it)");
  REQUIRE(std::filesystem::exists(ref));
  const std::string expected = read_text(ref);
  if (expected == actual) {
    SUCCEED();
    return;
  }
  std::istringstream e(expected), a(actual);
  std::string el, al;
  int n = 0;
  for (;;) {
    ++n;
    const bool he = static_cast<bool>(std::getline(e, el)), ha = static_cast<bool>(std::getline(a, al));
    if (!he && !ha) break;
    if (he != ha || el != al) {
      INFO("first difference at line " << n << "\nexpected: " << (he ? el : "(end of file)")
                                       << "\nactual:   " << (ha ? al : "(end of output)"));
      CHECK(actual == expected);
      return;
    }
  }
  CHECK(actual == expected);  // same lines, different line ends
}

}  // namespace rg::test
