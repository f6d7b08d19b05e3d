// Whole numbers and durations as written in rateguard's files (values.hpp).
#include "values.hpp"

#include <cstdint>
#include <limits>

namespace rg {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0 || i > 12) return std::nullopt;
  auto n = parse_number<std::int64_t>(text.substr(0, i));
  if (!n) return std::nullopt;
  std::string_view u = text.substr(i);
  std::int64_t mult = 0;
  if (u.empty() || u == "s") mult = 1000;
  else if (u == "ms") mult = 1;
  else if (u == "m") mult = 60'000;
  else if (u == "h") mult = 3'600'000;
  else if (u == "d") mult = 86'400'000;
  else return std::nullopt;
  if (*n > std::numeric_limits<std::int64_t>::max() / mult) return std::nullopt;
  return std::chrono::milliseconds(*n * mult);
}

std::string format_duration(std::chrono::milliseconds d) {
  auto v = d.count();
  if (v != 0 && v % 86'400'000 == 0) return std::to_string(v / 86'400'000) + "d";
  if (v != 0 && v % 3'600'000 == 0) return std::to_string(v / 3'600'000) + "h";
  if (v != 0 && v % 60'000 == 0) return std::to_string(v / 60'000) + "m";
  if (v % 1000 == 0) return std::to_string(v / 1000) + "s";
  return std::to_string(v) + "ms";
}

}  // namespace rg
