#include "control/changelog/log_record.h"

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

std::vector<std::string_view> LogRecordPieces(const std::vector<LogRecord>& records, std::string& headers) {
  constexpr size_t kHeaderBytes = 3 * sizeof(int64_t);
  headers.clear();
  headers.reserve(records.size() * kHeaderBytes);  // no reallocation: the pieces point into it
  std::vector<std::string_view> pieces;
  pieces.reserve(2 * records.size());
  for (const auto& r : records) {
    Put<int64_t>(headers, r.seq);
    Put<int64_t>(headers, r.time.time_since_epoch().count());
    Put<uint64_t>(headers, r.redo.size());
    pieces.emplace_back(headers.data() + headers.size() - kHeaderBytes, kHeaderBytes);
    if (!r.redo.empty()) pieces.emplace_back(r.redo);
  }
  return pieces;
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
