// Private to control/: the records of an instance's change log as stored in
// repository log segments. A record is one committed transaction: its place
// in the instance's log (seq, dense from 1), the time Strata saw the commit,
// and the engine's redo. Segments are written in seq order; after a crash the
// same transaction may be stored twice (same seq, same redo), so readers keep
// the first record of each seq.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace strata::control {

struct LogRecord {
  int64_t seq = 0;
  TimePoint time{};
  std::string redo;
};

// The encoding of `records` as pieces to store one after another: each
// record's header (seq, time, redo size), written into `headers` (which
// must outlive the pieces), then its redo, read in place: a WAL backlog's
// bytes are not copied again on their way to the compressor.
std::vector<std::string_view> LogRecordPieces(const std::vector<LogRecord>& records, std::string& headers);
Result<std::vector<LogRecord>> DecodeLogRecords(std::string_view bytes);

}  // namespace strata::control
