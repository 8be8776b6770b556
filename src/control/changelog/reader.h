// Private to control/: the one reader of an instance's change log as stored
// in repository log segments. Both users walk the same records the same way:
// point-in-time replay (the log after a base snapshot up to the target time)
// and the incremental-base computation (the log between two snapshots' marks,
// to tell which file ranges changed).
//
// Segments are listed in the order of the times they span; records come in
// seq order; a seq stored twice (after a crash) is read once; a seq missing
// is an error (kCorruption), never skipped.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "control/backup_store.h"
#include "control/changelog/log_record.h"

namespace strata::control {

// What one Read hands over: records first_seq, first_seq+1, ... up to
// last_seq, stopping before the first record stamped after `until`.
struct ChangeLogRange {
  int64_t first_seq = 1;
  int64_t last_seq = std::numeric_limits<int64_t>::max();
  TimePoint until = TimePoint::max();
};

class ChangeLogReader {
 public:
  // The segments of `stream` that span times in [from, to].
  static Result<ChangeLogReader> Open(BackupStore& store, std::string stream,
                                      TimePoint from = TimePoint::min(),
                                      TimePoint to = TimePoint::max());

  // Skips the segments that end before `t`, but the last of them: records
  // stamped after t are in the rest, and the record stamped at t may sit
  // in the last segment that ends before it.
  void StartNear(TimePoint t);
  // The stored size of the segments left to read.
  uint64_t StoredBytes() const;

  using RecordFn = std::function<Status(LogRecord& record)>;
  using SegmentDoneFn = std::function<Status()>;
  // Hands each record of `range` to on_record (which may move its redo
  // away), then calls segment_done after each segment read (callers batch
  // there, so memory stays bounded by a few segments). A non-ok Status from
  // either stops the read and is returned. Returns the seq of the last
  // record handed over (range.first_seq - 1 if none): less than
  // range.last_seq when the stored log ends earlier or reaches `until`.
  Result<int64_t> Read(const ChangeLogRange& range, const RecordFn& on_record,
                       const SegmentDoneFn& segment_done = nullptr);

 private:
  ChangeLogReader(BackupStore& store, std::string stream, std::vector<LogSegmentRef> segments)
      : store_(&store), stream_(std::move(stream)), segments_(std::move(segments)) {}

  BackupStore* store_;
  std::string stream_;
  std::vector<LogSegmentRef> segments_;
  size_t start_ = 0;
};

}  // namespace strata::control
