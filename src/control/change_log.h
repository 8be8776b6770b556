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

// Into `out` (cleared first, sized once): the capture keeps one buffer for
// every segment, so a WAL backlog drained in 16 MiB segments does not fault
// in a fresh, doubling buffer for each.
void EncodeLogRecords(const std::vector<LogRecord>& records, std::string& out);
Result<std::vector<LogRecord>> DecodeLogRecords(std::string_view bytes);

}  // namespace strata::control
