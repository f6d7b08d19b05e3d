// The registry and its text exposition (Prometheus 0.0.4: # HELP, # TYPE, one line per series; histograms
// as cumulative _bucket{le=...} lines, _sum and _count).
#include "metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>

namespace rg::metrics {

histogram::histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void histogram::observe(double v) {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), v);  // first bound >= v: le is inclusive
  ++counts_[static_cast<std::size_t>(at - bounds_.begin())];
  ++count_;
  sum_ += v;
}

double bucket_quantile(const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts, double q) {
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  if (total == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank && seen > 0) return i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::infinity();
}

template <typename T>
T& family<T>::with(const std::vector<std::string_view>& values) {
  if (values.size() != labels_.size()) std::abort();  // a programming error: the family's labels are fixed
  std::vector<std::string> key;
  key.reserve(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::string_view v = values[i];
    if (labels_[i].max_values > 0) {
      auto& seen = seen_[i];
      if (seen.find(v) == seen.end()) {
        if (seen.size() < labels_[i].max_values)
          seen.emplace(v);
        else
          v = overflow_value;
      }
    }
    key.emplace_back(v);
  }
  auto it = series_.find(key);
  if (it != series_.end()) return it->second;
  if constexpr (std::is_same_v<T, histogram>)
    return series_.emplace(std::move(key), histogram(bounds_)).first->second;
  else
    return series_.emplace(std::move(key), T{}).first->second;
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

registry::entry& registry::add(std::string name, std::string help, kind k) {
  for (const auto& e : entries_)
    if (e.name == name) std::abort();  // registered twice: a programming error
  entries_.push_back(entry{std::move(name), std::move(help), k, nullptr, nullptr, nullptr, nullptr});
  return entries_.back();
}

family<counter>& registry::counters(std::string name, std::string help, std::vector<label> labels) {
  auto& e = add(std::move(name), std::move(help), kind::counter);
  e.c = std::make_unique<family<counter>>(std::move(labels));
  return *e.c;
}

family<gauge>& registry::gauges(std::string name, std::string help, std::vector<label> labels) {
  auto& e = add(std::move(name), std::move(help), kind::gauge);
  e.g = std::make_unique<family<gauge>>(std::move(labels));
  return *e.g;
}

family<histogram>& registry::histograms(std::string name, std::string help, std::vector<double> bounds,
                                        std::vector<label> labels) {
  auto& e = add(std::move(name), std::move(help), kind::histogram);
  e.h = std::make_unique<family<histogram>>(std::move(labels), std::move(bounds));
  return *e.h;
}

void registry::add_gauge_fn(std::string name, std::string help, std::function<double()> read) {
  add(std::move(name), std::move(help), kind::gauge).read = std::move(read);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {

std::string escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, p);
}

// {a="x",b="y"} of a series, with `extra` (a histogram's le) last; "" when there is no label at all.
std::string label_text(const std::vector<label>& names, const std::vector<std::string>& values,
                       const std::string& extra = {}) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i)
    s += (s.empty() ? "" : ",") + names[i].name + "=\"" + escape_label_value(values[i]) + "\"";
  if (!extra.empty()) s += (s.empty() ? "" : ",") + extra;
  return s.empty() ? s : "{" + s + "}";
}

}  // namespace

std::string registry::render() const {
  std::string out;
  for (const auto& e : entries_) {
    out += "# HELP " + e.name + " " + escape_help(e.help) + "\n";
    out += "# TYPE " + e.name + (e.k == kind::counter ? " counter\n" : e.k == kind::gauge ? " gauge\n" : " histogram\n");
    if (e.read) {
      out += e.name + " " + number(e.read()) + "\n";
    } else if (e.c) {
      for (const auto& [values, c] : e.c->series())
        out += e.name + label_text(e.c->labels(), values) + " " + std::to_string(c.value()) + "\n";
    } else if (e.g) {
      for (const auto& [values, g] : e.g->series())
        out += e.name + label_text(e.g->labels(), values) + " " + number(g.value()) + "\n";
    } else if (e.h) {
      for (const auto& [values, h] : e.h->series()) {
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < h.counts().size(); ++i) {
          cumulative += h.counts()[i];
          const std::string le =
              i < h.bounds().size() ? number(h.bounds()[i]) : std::string("+Inf");
          out += e.name + "_bucket" + label_text(e.h->labels(), values, "le=\"" + le + "\"") + " " +
                 std::to_string(cumulative) + "\n";
        }
        out += e.name + "_sum" + label_text(e.h->labels(), values) + " " + number(h.sum()) + "\n";
        out += e.name + "_count" + label_text(e.h->labels(), values) + " " + std::to_string(h.count()) + "\n";
      }
    }
  }
  return out;
}

std::vector<std::string> registry::exposed_names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (e.k == kind::histogram) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) out.push_back(e.name + suffix);
    } else {
      out.push_back(e.name);
    }
  }
  return out;
}

}  // namespace rg::metrics
