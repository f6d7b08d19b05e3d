// Values as written in rateguard's files and commands: whole numbers and durations ("10s", "5m", "1d").
// One parser each, shared by the settings, the limits, the control commands and rateguardctl; standard library only.
#pragma once

#include <charconv>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace rg {

// The whole of `s` as a number of type T (no sign, space or suffix unless from_chars takes it); nullopt if it
// is not one or does not fit.
template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// "100ms", "10s", "5m", "1h", "2d"; a bare number is seconds (Postfix time convention). nullopt when malformed
// or beyond what milliseconds can hold (so a bound check after it sees the real value, never a wrapped one).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// The largest unit that divides it exactly: "1d", "90m", "1500ms".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace rg
