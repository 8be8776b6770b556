#include "control/validation.h"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <random>

namespace strata::control {
namespace {

Status Invalid(std::string_view param, std::string_view why) {
  return Status(errors::kInvalidParameterValue, fmt::format("Invalid {}: {}", param, why));
}

bool ParseHhMm(std::string_view s, int& minute) {
  if (s.size() != 5 || s[2] != ':') return false;
  for (int i : {0, 1, 3, 4})
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return false;
  minute = h * 60 + m;
  return true;
}

constexpr std::array<std::string_view, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

bool ParseDayHhMm(std::string_view s, int& minute) {
  if (s.size() != 9 || s[3] != ':') return false;
  std::string day = ToLower(s.substr(0, 3));
  for (size_t d = 0; d < kDays.size(); ++d) {
    if (day == kDays[d]) {
      int m = 0;
      if (!ParseHhMm(s.substr(4), m)) return false;
      minute = static_cast<int>(d) * 1440 + m;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Status ValidateIdentifier(std::string_view param, std::string_view v, size_t max_len) {
  if (v.empty() || v.size() > max_len) {
    return Invalid(param, fmt::format("must contain from 1 to {} characters", max_len));
  }
  if (!std::isalpha(static_cast<unsigned char>(v[0])) || !isascii(static_cast<unsigned char>(v[0]))) {
    return Invalid(param, "the first character must be a letter");
  }
  for (char c : v) {
    if (!(isascii(static_cast<unsigned char>(c)) &&
          (std::isalnum(static_cast<unsigned char>(c)) || c == '-'))) {
      return Invalid(param, "must contain only ASCII letters, digits, and hyphens");
    }
  }
  if (v.back() == '-') return Invalid(param, "cannot end with a hyphen");
  if (v.find("--") != std::string_view::npos) return Invalid(param, "cannot contain two consecutive hyphens");
  return Status::Ok();
}

int DailyWindow::Length() const { return (end_minute - start_minute + 1440) % 1440; }
int WeeklyWindow::Length() const { return (end_minute - start_minute + 10080) % 10080; }

Result<DailyWindow> ParseDailyWindow(std::string_view param, std::string_view v, int min_minutes) {
  DailyWindow w;
  size_t dash = v.find('-');
  if (dash == std::string_view::npos || !ParseHhMm(v.substr(0, dash), w.start_minute) ||
      !ParseHhMm(v.substr(dash + 1), w.end_minute)) {
    return Invalid(param, fmt::format("'{}' must be in the format hh24:mi-hh24:mi", v));
  }
  if (w.Length() < min_minutes) {
    return Invalid(param, fmt::format("the window must be at least {} minutes", min_minutes));
  }
  return w;
}

Result<WeeklyWindow> ParseWeeklyWindow(std::string_view param, std::string_view v) {
  WeeklyWindow w;
  size_t dash = v.find('-');
  if (dash == std::string_view::npos || !ParseDayHhMm(v.substr(0, dash), w.start_minute) ||
      !ParseDayHhMm(v.substr(dash + 1), w.end_minute)) {
    return Invalid(param, fmt::format("'{}' must be in the format ddd:hh24:mi-ddd:hh24:mi", v));
  }
  if (w.Length() < 30) return Invalid(param, "the window must be at least 30 minutes");
  return w;
}

bool Overlaps(const DailyWindow& b, const WeeklyWindow& m) {
  // Test each day's instance of the backup window against the weekly window,
  // on a circular week of 10080 minutes.
  auto inside = [](int t, int start, int len, int period) {
    return ((t - start) % period + period) % period < len;
  };
  for (int day = 0; day < 7; ++day) {
    int bs = day * 1440 + b.start_minute;
    int bl = b.Length();
    if (inside(bs, m.start_minute, m.Length(), 10080) ||
        inside(m.start_minute, bs, bl, 10080)) {
      return true;
    }
  }
  return false;
}

std::string FormatDailyWindow(const DailyWindow& w) {
  return fmt::format("{:02}:{:02}-{:02}:{:02}", w.start_minute / 60, w.start_minute % 60,
                     w.end_minute / 60, w.end_minute % 60);
}

std::string FormatWeeklyWindow(const WeeklyWindow& w) {
  auto one = [](int m) {
    return fmt::format("{}:{:02}:{:02}", kDays[m / 1440], (m % 1440) / 60, m % 60);
  };
  return one(w.start_minute) + "-" + one(w.end_minute);
}

Status ValidateTag(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > 128) {
    return Invalid("Tag key", "must be from 1 to 128 characters");
  }
  if (value.size() > 256) return Invalid("Tag value", "must be at most 256 characters");
  std::string lower = ToLower(key.substr(0, 4));
  if (lower == "aws:" || lower == "rds:") {
    return Invalid("Tag key", fmt::format("'{}' may not begin with aws: or rds:", key));
  }
  auto allowed = [](std::string_view s) {
    for (unsigned char c : s) {
      if (c >= 0x80) continue;  // \p{L}, \p{Z}, \p{N} beyond ASCII: accepted as UTF-8
      if (std::isalnum(c) || c == ' ' || std::string_view("_.:/=+-@").find(static_cast<char>(c)) !=
                                             std::string_view::npos)
        continue;
      return false;
    }
    return true;
  };
  if (!allowed(key) || !allowed(value)) {
    return Invalid("Tag", "keys and values may contain only letters, digits, spaces and _.:/=+-@");
  }
  return Status::Ok();
}

TimePoint LastDailyWindowStart(const DailyWindow& w, TimePoint now) {
  using namespace std::chrono;
  auto day = floor<days>(now);
  TimePoint start = time_point_cast<microseconds>(day) + minutes(w.start_minute);
  return start <= now ? start : start - days(1);
}

bool InWindow(const WeeklyWindow& w, TimePoint now) {
  using namespace std::chrono;
  // 1970-01-01 was a Thursday: Monday 00:00 is 3 days before it.
  auto since_monday = duration_cast<minutes>(now.time_since_epoch() + days(3)).count() % 10080;
  int m = static_cast<int>(since_monday);
  if (w.start_minute <= w.end_minute) return m >= w.start_minute && m < w.end_minute;
  return m >= w.start_minute || m < w.end_minute;
}

// us-east-1's 8-hour block for default backup windows, as RDS documents it.
constexpr int kDefaultBackupBlockStart = 3 * 60;

std::string DefaultBackupWindow() {
  std::random_device rd;
  int start = kDefaultBackupBlockStart + static_cast<int>(rd() % 15) * 30;
  return FormatDailyWindow(DailyWindow{start, (start + 30) % 1440});
}

std::string DefaultMaintenanceWindow(const std::string& backup_window) {
  auto b = ParseDailyWindow("PreferredBackupWindow", backup_window, 30);
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    int start = static_cast<int>(rd() % 7) * 1440 + static_cast<int>(rd() % 48) * 30;
    WeeklyWindow w{start, (start + 30) % 10080};
    if (!b.ok() || !Overlaps(*b, w)) return FormatWeeklyWindow(w);
  }
  return "sun:23:00-sun:23:30";
}

}  // namespace strata::control
