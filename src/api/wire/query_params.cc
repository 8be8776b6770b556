#include "api/wire/query_params.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>

namespace strata::api {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A list index as botocore writes it: 1-based, a plain decimal that fits.
std::optional<int> ParseIndex(std::string_view s) {
  if (s.empty() || s.size() > 6) return std::nullopt;
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

constexpr int kMaxListItems = 1000;

}  // namespace

std::optional<std::string> FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      int hi = i + 1 < s.size() ? HexValue(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

Result<QueryParams> QueryParams::Parse(std::string_view text) {
  QueryParams p;
  size_t start = 0;
  while (start <= text.size()) {
    size_t amp = text.find('&', start);
    if (amp == std::string_view::npos) amp = text.size();
    std::string_view pair = text.substr(start, amp - start);
    start = amp + 1;
    if (pair.empty()) {
      if (amp == text.size()) break;
      continue;
    }
    size_t eq = pair.find('=');
    auto key = FormDecode(pair.substr(0, eq));
    auto value = FormDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!key || !value) {
      return Status(errors::kMalformedQueryString,
                    "The query string is malformed: invalid percent-encoding");
    }
    if (!IsValidUtf8(*key) || !IsValidUtf8(*value)) {
      return Status(errors::kInvalidParameterValue,
                    fmt::format("Parameter {} is not valid UTF-8", IsValidUtf8(*key) ? *key : "name"));
    }
    p.values_.emplace(std::move(*key), std::move(*value));  // emplace keeps the first
    if (amp == text.size()) break;
  }
  return p;
}

void QueryParams::Merge(const QueryParams& more) {
  for (const auto& [k, v] : more.values_) values_.emplace(k, v);
}

bool QueryParams::Has(std::string_view key) const { return values_.find(key) != values_.end(); }

std::optional<std::string> QueryParams::Get(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

Result<std::string> QueryParams::Required(std::string_view key) const {
  auto v = Get(key);
  if (!v) {
    return Status(errors::kMissingParameter,
                  fmt::format("The request must contain the parameter {}", key));
  }
  if (v->empty()) {
    // Present but blank is a bad value to AWS, not a missing parameter.
    return Status(errors::kInvalidParameterValue,
                  fmt::format("The parameter {} must be provided and must not be blank.", key));
  }
  return *v;
}

Result<std::optional<int64_t>> QueryParams::Int(std::string_view key, int64_t min, int64_t max) const {
  auto v = Get(key);
  if (!v) return std::optional<int64_t>();
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size()) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("Invalid value for parameter {}: '{}' is not an integer", key, *v));
  }
  if (n < min || n > max) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("Invalid value for parameter {}: {} is not between {} and {}", key, n,
                              min, max));
  }
  return std::optional<int64_t>(n);
}

Result<std::optional<bool>> QueryParams::Bool(std::string_view key) const {
  auto v = Get(key);
  if (!v) return std::optional<bool>();
  if (*v == "true" || *v == "True" || *v == "TRUE") return std::optional<bool>(true);
  if (*v == "false" || *v == "False" || *v == "FALSE") return std::optional<bool>(false);
  return Status(errors::kInvalidParameterValue,
                fmt::format("Invalid value for parameter {}: '{}' is not a boolean", key, *v));
}

Result<std::optional<TimePoint>> QueryParams::Time(std::string_view key) const {
  auto v = Get(key);
  if (!v) return std::optional<TimePoint>();
  auto t = ParseIso8601(*v);
  if (!t) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("Invalid value for parameter {}: '{}' is not an ISO 8601 time", key, *v));
  }
  return std::optional<TimePoint>(*t);
}

Result<std::vector<int>> QueryParams::Indices(std::string_view prefix) const {
  std::string p = std::string(prefix) + ".";
  std::set<int> seen;
  for (auto it = values_.lower_bound(p); it != values_.end() && it->first.rfind(p, 0) == 0; ++it) {
    std::string_view rest = std::string_view(it->first).substr(p.size());
    size_t dot = rest.find('.');
    auto idx = ParseIndex(rest.substr(0, dot));
    if (!idx) {
      return Status(errors::kInvalidParameterValue,
                    fmt::format("Invalid list index in parameter {}", it->first));
    }
    seen.insert(*idx);
    if (seen.size() > kMaxListItems) {
      return Status(errors::kInvalidParameterValue,
                    fmt::format("Too many items in parameter {}", prefix));
    }
  }
  return std::vector<int>(seen.begin(), seen.end());
}

Result<std::vector<std::string>> QueryParams::List(std::string_view key, std::string_view member) const {
  std::string prefix = fmt::format("{}.{}", key, member);
  ASSIGN_OR_RETURN(auto indices, Indices(prefix));
  std::vector<std::string> out;
  for (int i : indices) {
    auto v = Get(fmt::format("{}.{}", prefix, i));
    if (!v) {
      return Status(errors::kInvalidParameterValue,
                    fmt::format("Invalid list item {}.{}", prefix, i));
    }
    out.push_back(*v);
  }
  return out;
}

Result<std::vector<KeyValue>> QueryParams::Tags(std::string_view key) const {
  std::string prefix = fmt::format("{}.Tag", key);
  ASSIGN_OR_RETURN(auto indices, Indices(prefix));
  std::vector<KeyValue> out;
  for (int i : indices) {
    auto k = Get(fmt::format("{}.{}.Key", prefix, i));
    if (!k) {
      return Status(errors::kInvalidParameterValue, fmt::format("Tag {} has no Key", i));
    }
    out.push_back({*k, Get(fmt::format("{}.{}.Value", prefix, i)).value_or("")});
  }
  return out;
}

Result<std::vector<Filter>> QueryParams::Filters(std::string_view key) const {
  std::string prefix = fmt::format("{}.Filter", key);
  ASSIGN_OR_RETURN(auto indices, Indices(prefix));
  std::vector<Filter> out;
  for (int i : indices) {
    auto name = Get(fmt::format("{}.{}.Name", prefix, i));
    if (!name) {
      return Status(errors::kInvalidParameterValue, fmt::format("Filter {} has no Name", i));
    }
    ASSIGN_OR_RETURN(auto values, List(fmt::format("{}.{}.Values", prefix, i), "Value"));
    out.push_back({*name, std::move(values)});
  }
  return out;
}

}  // namespace strata::api
