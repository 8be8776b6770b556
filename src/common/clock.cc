#include "common/clock.h"

#include <cctype>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace strata {

TimePoint SystemClock::Now() const {
  return std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
}

ManualClock::ManualClock(TimePoint start) : micros_(start.time_since_epoch().count()) {}
TimePoint ManualClock::Now() const { return TimePoint(std::chrono::microseconds(micros_.load())); }
void ManualClock::Set(TimePoint t) { micros_.store(t.time_since_epoch().count()); }
void ManualClock::Advance(std::chrono::microseconds d) { micros_.fetch_add(d.count()); }

namespace {

std::tm ToUtcTm(TimePoint t) {
  std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  if (t.time_since_epoch().count() < 0 && t.time_since_epoch().count() % 1000000 != 0) secs -= 1;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return tm;
}

bool ReadDigits(std::string_view s, size_t& pos, int n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (int i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}

bool Expect(std::string_view s, size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

}  // namespace

std::string FormatIso8601(TimePoint t) {
  std::tm tm = ToUtcTm(t);
  int64_t micros = t.time_since_epoch().count() % 1000000;
  if (micros < 0) micros += 1000000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros / 1000);
}

std::string FormatIso8601Seconds(TimePoint t) {
  std::tm tm = ToUtcTm(t);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::optional<TimePoint> ParseIso8601(std::string_view s) {
  size_t pos = 0;
  int year, mon, day, hour, min, sec = 0;
  if (!ReadDigits(s, pos, 4, year) || !Expect(s, pos, '-') || !ReadDigits(s, pos, 2, mon) ||
      !Expect(s, pos, '-') || !ReadDigits(s, pos, 2, day))
    return std::nullopt;
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) return std::nullopt;
  ++pos;
  if (!ReadDigits(s, pos, 2, hour) || !Expect(s, pos, ':') || !ReadDigits(s, pos, 2, min))
    return std::nullopt;
  int64_t micros = 0;
  if (pos < s.size() && s[pos] == ':') {
    ++pos;
    if (!ReadDigits(s, pos, 2, sec)) return std::nullopt;
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      int digits = 0;
      while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
        if (digits < 6) micros = micros * 10 + (s[pos] - '0');
        ++digits;
        ++pos;
      }
      if (digits == 0) return std::nullopt;
      for (int i = digits; i < 6; ++i) micros *= 10;
    }
  }
  int offset_minutes = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh, om = 0;
    if (!ReadDigits(s, pos, 2, oh)) return std::nullopt;
    if (pos < s.size() && s[pos] == ':') ++pos;
    if (pos < s.size() && !ReadDigits(s, pos, 2, om)) return std::nullopt;
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return std::nullopt;  // a time without a zone is ambiguous; RDS wants UTC
  }
  if (pos != s.size()) return std::nullopt;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
    return std::nullopt;
  std::chrono::year_month_day ymd{std::chrono::year(year), std::chrono::month(mon),
                                  std::chrono::day(day)};
  if (!ymd.ok()) return std::nullopt;
  auto days = std::chrono::sys_days(ymd);
  auto t = std::chrono::time_point_cast<std::chrono::microseconds>(days) +
           std::chrono::hours(hour) + std::chrono::minutes(min) + std::chrono::seconds(sec) +
           std::chrono::microseconds(micros) - std::chrono::minutes(offset_minutes);
  return TimePoint(t.time_since_epoch());
}

double ToEpochSeconds(TimePoint t) { return t.time_since_epoch().count() / 1e6; }

}  // namespace strata
