// Reading a SQLite WAL file (https://www.sqlite.org/fileformat2.html#walformat)
// to find the committed frames in it: the basis of consistent online
// snapshots (page images = database file + the newest committed frame of each
// page) and, later, of change-log capture.
//
// A frame is valid only if its salts match the header and the running
// checksum over header and frames matches; a transaction counts only up to
// its commit frame (the frame whose "database size" field is non-zero).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/sqlite.h"
#include "common/status.h"

namespace strata::engine {

struct WalIndex {
  uint32_t page_size = 0;
  uint32_t checkpoint_seq = 0;
  uint32_t salt1 = 0, salt2 = 0;
  // Frames that belong to committed transactions, in order.
  uint64_t committed_frames = 0;
  // Database size in pages after the last committed transaction (0: none).
  uint32_t db_pages = 0;
  // For each page: the byte offset in the WAL of the newest committed frame's page data.
  std::map<uint32_t, uint64_t> page_offsets;
  // Offsets of each commit frame (1-based frame numbers), for change-log capture.
  std::vector<uint64_t> commit_frames;
};

// Reads `wal_path` (which may be absent or empty: an empty index). Stops at the
// first frame that does not verify; what follows it is not committed data.
Result<WalIndex> ReadWalIndex(const std::string& wal_path);

// The WAL header: which generation of the WAL the file holds. SQLite bumps
// checkpoint_seq and salt1 each time it restarts the WAL, and draws a new salt2.
struct WalHeader {
  bool big_endian = false;
  uint32_t page_size = 0;
  uint32_t checkpoint_seq = 0;
  uint32_t salt1 = 0, salt2 = 0;
  uint32_t checksum1 = 0, checksum2 = 0;  // of the header: the chain's seed
};

// Where an incremental reader stands in one WAL generation: frames consumed
// (all of them committed) and the running checksum after the last one.
struct WalCursor {
  uint64_t frames = 0;
  uint32_t s1 = 0, s2 = 0;
};

// One committed transaction's frames: the newest image of each page it wrote.
struct WalTransaction {
  uint32_t db_pages = 0;  // database size in pages after the commit
  std::map<uint32_t, std::string> pages;
};

// nullopt: no valid header (absent, empty, torn or not a WAL).
std::optional<WalHeader> ReadWalHeader(int fd);

// A commit frame an incremental reader has verified but not read yet.
struct WalCommit {
  WalCursor after;  // the cursor just past the commit frame
  uint32_t db_pages = 0;
};
// What an incremental reader has verified past its cursor, so that a backlog
// read in bounded pieces is checksummed once. Only commit frames are
// remembered: frames of a transaction not yet committed may still be
// rewritten (a rollback, or SQLite rewriting a frame in place before the
// commit), so they are verified again on every call.
struct WalScan {
  uint32_t salt1 = 0, salt2 = 0;  // the generation it belongs to
  WalCursor from;                 // the cursor the commits follow
  std::deque<WalCommit> commits;  // oldest first
  bool at_end = true;             // false: it stopped before the last valid frame
};

// Reads committed transactions after `cursor` in the generation `hdr`
// describes and advances the cursor past them: at least one (if there is
// any), then more while all of their frames hold at most `max_bytes` of
// pages. Frames of a transaction not yet committed are verified but not kept
// (they are read again once committed). `more`: committed transactions may
// remain after the ones returned. `scan` carries what was verified between
// calls; a scan of another generation or cursor is started afresh.
Result<std::vector<WalTransaction>> ReadWalTransactions(int fd, const WalHeader& hdr, WalCursor& cursor,
                                                        WalScan& scan, uint64_t max_bytes, bool& more);
// Moves `cursor` past every committed transaction without reading their pages.
void SkipWalTransactions(int fd, const WalHeader& hdr, WalCursor& cursor);

// Writes zeros from the end of the WAL file at `wal_path` up to `size` bytes,
// holding the database's write lock meanwhile (BEGIN IMMEDIATE on `writer`,
// a read-write connection of its own; a busy database is left as it was and
// false returned, as on any failure). Why: a commit that extends the WAL file
// costs its fsync a journal commit (new blocks, a new size) that a commit
// overwriting blocks already there does not, and a reader that holds the WAL
// from restarting makes every commit extend it. Why it is safe: under the
// write lock the file ends at or past the last frame, and SQLite stops reading
// a WAL at the first frame without the header's salts and a valid checksum,
// so zeros are no frames. `sync_under_lock`: the zeros reach the disk before
// the lock is released; otherwise just after (a commit in between then syncs
// them with its own frames). Does nothing (false) while the disk is below its
// low-water mark (disk::AutomaticWorkPaused).
bool ExtendWal(sqlite::Db& writer, const std::string& wal_path, uint64_t size, bool sync_under_lock);

// Whether a frame header (kWalFrameHeaderSize bytes) carries `hdr`'s salts,
// i.e. belongs to the WAL generation `hdr` describes.
bool FrameHeaderOfGeneration(const unsigned char* frame_header, const WalHeader& hdr);
// The same for the frame whose header starts at `offset` in `fd` (false if unreadable).
bool FrameOfGeneration(int fd, uint64_t offset, const WalHeader& hdr);

// A SQLite busy handler (sqlite3_busy_handler) retrying every 50 us, at most
// *static_cast<const int*>(max_attempts) times. A writer committing back to
// back frees its lock only for microseconds between transactions; SQLite's
// own busy timeout sleeps a whole millisecond between tries and would almost
// never get it.
int RetryEvery50us(void* max_attempts, int attempt);

// The database's page size, read on `db` (which also sizes each WAL frame).
Result<uint32_t> DatabasePageSize(sqlite::Db& db);

constexpr uint64_t kWalHeaderSize = 32;
constexpr uint64_t kWalFrameHeaderSize = 24;

}  // namespace strata::engine
