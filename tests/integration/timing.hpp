// Bounds that depend on the machine's speed: how soon after its deadline a timeout is answered, how long a
// bystander waits during an attack, how fast a reconnect is. They are gates only in the optimized tree
// (RG_TIMING_GATES=1, tests/CMakeLists.txt), where each is generous enough for two cores shared with other
// builds; in the sanitizer or Debug tree, several times slower, a missed bound is printed as a figure
// (a Catch WARN) and never fails the test. What a test proves beyond speed (every answer right, a deadline
// fired at all and not before its time, the error it reports) stays a CHECK in every tree.
#pragma once

#include <catch2/catch.hpp>

namespace rg::test {

#ifndef RG_TIMING_GATES
#define RG_TIMING_GATES 1
#endif
inline constexpr bool timing_gates = RG_TIMING_GATES != 0;

}  // namespace rg::test

#define RG_CHECK_TIMING(...)                                                           \
  do {                                                                                 \
    if (::rg::test::timing_gates) {                                                    \
      CHECK(__VA_ARGS__);                                                              \
    } else if (!(__VA_ARGS__)) {                                                       \
      WARN("timing bound missed (a figure, not a gate, in this tree): " #__VA_ARGS__); \
    }                                                                                  \
  } while (false)
