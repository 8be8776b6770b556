// All time comes from one injectable clock (DESIGN invariant 8), so tests can
// run weeks of schedules and retention in seconds.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace strata {

using TimePoint = std::chrono::time_point<std::chrono::system_clock, std::chrono::microseconds>;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The wall clock.
class SystemClock final : public Clock {
 public:
  TimePoint Now() const override;
};

// A clock that only moves when told to. For tests and, in test builds, for a
// running stratad driven through its debug endpoint.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start);
  TimePoint Now() const override;
  void Set(TimePoint t);
  void Advance(std::chrono::microseconds d);

 private:
  std::atomic<int64_t> micros_;
};

// ISO 8601 UTC with millisecond precision, "2026-11-23T09:00:00.123Z", as the
// RDS XML responses carry timestamps.
std::string FormatIso8601(TimePoint t);
// The same with whole seconds: "2026-11-23T09:00:00Z".
std::string FormatIso8601Seconds(TimePoint t);
// Accepts what botocore sends and the RDS docs show: "2026-11-23T09:00:00Z",
// fractional seconds, "2026-11-23T09:00Z", and +hh:mm offsets. nullopt if not a time.
std::optional<TimePoint> ParseIso8601(std::string_view s);
double ToEpochSeconds(TimePoint t);

}  // namespace strata
