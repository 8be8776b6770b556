// RDS's input rules, in one place, as the RDS API reference states them.
// Each check returns InvalidParameterValue naming the parameter, or OK.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/status.h"

namespace strata::control {

// DB instance identifiers: 1-63; snapshot identifiers: 1-255. Letters, digits
// and hyphens; a letter first; no trailing hyphen and no "--". The caller
// lower-cases after validation (RDS stores them lower-case).
Status ValidateIdentifier(std::string_view param, std::string_view value, size_t max_len);
std::string ToLower(std::string_view s);

// A daily window "hh24:mi-hh24:mi" in UTC; minutes since midnight of its ends.
struct DailyWindow {
  int start_minute = 0;
  int end_minute = 0;
  int Length() const;  // wraps midnight
};
Result<DailyWindow> ParseDailyWindow(std::string_view param, std::string_view value,
                                     int min_minutes);

// A weekly window "ddd:hh24:mi-ddd:hh24:mi"; minutes since Monday 00:00.
struct WeeklyWindow {
  int start_minute = 0;
  int end_minute = 0;
  int Length() const;
};
Result<WeeklyWindow> ParseWeeklyWindow(std::string_view param, std::string_view value);

// True if the daily backup window overlaps the weekly maintenance window.
bool Overlaps(const DailyWindow& backup, const WeeklyWindow& maintenance);

// The start of the most recent occurrence of a daily window at or before `now`.
TimePoint LastDailyWindowStart(const DailyWindow& w, TimePoint now);
// True if `now` falls inside the weekly window.
bool InWindow(const WeeklyWindow& w, TimePoint now);

std::string FormatDailyWindow(const DailyWindow& w);
std::string FormatWeeklyWindow(const WeeklyWindow& w);

// Windows for an instance created without them, as RDS picks them: a random
// half hour of us-east-1's 8-hour block for backups, and a random weekly
// half hour that does not overlap it for maintenance.
std::string DefaultBackupWindow();
std::string DefaultMaintenanceWindow(const std::string& backup_window);

// Tag keys and values as RDS allows them (key 1-128, value 0-256, no "aws:"
// or "rds:" key prefix, letters/digits/space and _.:/=+-@).
Status ValidateTag(std::string_view key, std::string_view value);

}  // namespace strata::control
