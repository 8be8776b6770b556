// Private to engine/: a postgres change-log record is a run of WAL bytes as
// streamed, with where it starts: "PGW1", timeline (u32 LE), start LSN (u64
// LE), then the bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::engine::pg {

struct WalChunk {
  uint32_t timeline = 0;
  uint64_t start = 0;
  std::string_view bytes;
};

inline constexpr size_t kWalChunkHeaderBytes = 4 + 4 + 8;  // magic, timeline, start

inline std::string EncodeWalChunk(uint32_t timeline, uint64_t start, std::string_view bytes) {
  std::string out("PGW1", 4);
  out.append(reinterpret_cast<const char*>(&timeline), 4);
  out.append(reinterpret_cast<const char*>(&start), 8);
  out.append(bytes);
  return out;
}

inline Result<WalChunk> DecodeWalChunk(std::string_view record) {
  if (record.size() < kWalChunkHeaderBytes || record.substr(0, 4) != "PGW1") {
    return Status(errors::kCorruption, "not a PostgreSQL WAL record in the change log");
  }
  WalChunk c;
  std::memcpy(&c.timeline, record.data() + 4, 4);
  std::memcpy(&c.start, record.data() + 8, 8);
  c.bytes = record.substr(kWalChunkHeaderBytes);
  return c;
}

}  // namespace strata::engine::pg
