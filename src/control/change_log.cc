#include "control/change_log.h"

#include <cstring>

namespace strata::control {
namespace {

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof v];
  std::memcpy(b, &v, sizeof v);  // little-endian hosts only (x86-64, arm64)
  out.append(b, sizeof v);
}

template <typename T>
bool Get(std::string_view& in, T& v) {
  if (in.size() < sizeof v) return false;
  std::memcpy(&v, in.data(), sizeof v);
  in.remove_prefix(sizeof v);
  return true;
}

}  // namespace

void EncodeLogRecords(const std::vector<LogRecord>& records, std::string& out) {
  size_t size = 0;
  for (const auto& r : records) size += 3 * sizeof(int64_t) + r.redo.size();
  out.clear();
  out.reserve(size);
  for (const auto& r : records) {
    Put<int64_t>(out, r.seq);
    Put<int64_t>(out, r.time.time_since_epoch().count());
    Put<uint64_t>(out, r.redo.size());
    out += r.redo;
  }
}

Result<std::vector<LogRecord>> DecodeLogRecords(std::string_view in) {
  std::vector<LogRecord> out;
  while (!in.empty()) {
    LogRecord r;
    int64_t us = 0;
    uint64_t n = 0;
    if (!Get(in, r.seq) || !Get(in, us) || !Get(in, n) || in.size() < n) {
      return Status(errors::kCorruption, "change-log segment is torn");
    }
    r.time = TimePoint(std::chrono::microseconds(us));
    r.redo.assign(in.substr(0, n));
    in.remove_prefix(n);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace strata::control
