#include "control/changelog/reader.h"

#include <fmt/format.h>

#include "common/error_codes.h"

namespace strata::control {

Result<ChangeLogReader> ChangeLogReader::Open(BackupStore& store, std::string stream,
                                              TimePoint from, TimePoint to) {
  ASSIGN_OR_RETURN(auto segments, store.ListLogSegments(stream, from, to));
  return ChangeLogReader(store, std::move(stream), std::move(segments));
}

void ChangeLogReader::StartNear(TimePoint t) {
  for (size_t i = start_; i < segments_.size(); ++i) {
    if (segments_[i].last < t) start_ = i;
  }
}

uint64_t ChangeLogReader::StoredBytes() const {
  uint64_t bytes = 0;
  for (size_t i = start_; i < segments_.size(); ++i) bytes += segments_[i].stored_bytes;
  return bytes;
}

Result<int64_t> ChangeLogReader::Read(const ChangeLogRange& range, const RecordFn& on_record,
                                      const SegmentDoneFn& segment_done) {
  int64_t last = range.first_seq - 1;  // the last record handed over
  bool done = false;
  for (size_t i = start_; i < segments_.size() && !done && last < range.last_seq; ++i) {
    ASSIGN_OR_RETURN(auto bytes, store_->ReadLogSegment(stream_, segments_[i]));
    ASSIGN_OR_RETURN(auto records, DecodeLogRecords(bytes));
    for (auto& rec : records) {
      if (rec.seq <= last) continue;  // before the range, or stored twice
      if (rec.seq > range.last_seq || rec.time > range.until) {
        done = true;
        break;
      }
      if (rec.seq != last + 1) {
        return Status(
            errors::kCorruption,
            fmt::format("the change log is missing transactions {} to {}", last + 1, rec.seq - 1));
      }
      last = rec.seq;
      RETURN_IF_ERROR(on_record(rec));
    }
    if (segment_done) RETURN_IF_ERROR(segment_done());
  }
  return last;
}

}  // namespace strata::control
