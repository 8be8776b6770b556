#include "common/sqlite_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>

namespace strata::sqlite {
namespace {

sqlite3_vfs* g_unix = nullptr;
sqlite3_vfs g_vfs;
sqlite3_io_methods g_methods;

// Our file: the database path and, after it (aligned), the unix VFS's file.
struct ShimFile {
  sqlite3_file base;
  const char* path;  // SQLite keeps the name valid until xClose
};

constexpr size_t kRealOffset = (sizeof(ShimFile) + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) *
                               alignof(std::max_align_t);

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kRealOffset); }

// Writes zeros from the -shm file's end to `size` bytes: real blocks, not
// holes. false on any failure (the disk is full), with the file cut back.
bool FillShm(const char* db_path, sqlite3_int64 size) {
  if (!db_path) return true;
  std::string shm = std::string(db_path) + "-shm";
  int fd = ::open(shm.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;  // not ours to judge: SQLite opens it itself
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0;
  const off_t from = st.st_size;
  static const char kZeros[32768] = {};
  for (off_t at = from; ok && at < size;) {
    size_t n = static_cast<size_t>(std::min<sqlite3_int64>(sizeof kZeros, size - at));
    ssize_t w = ::pwrite(fd, kZeros, n, at);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) at += w;
  }
  if (!ok) (void)::ftruncate(fd, from);
  ::close(fd);
  return ok;
}

int ShmMap(sqlite3_file* f, int region, int region_size, int extend, void volatile** out) {
  sqlite3_file* real = Real(f);
  if (extend) {
    // Without extending first: opens the -shm file (and, for the first
    // connection, resets it) and maps the region if the file has it.
    int rc = real->pMethods->xShmMap(real, region, region_size, 0, out);
    if (rc != SQLITE_OK || *out) return rc;
    if (!FillShm(reinterpret_cast<ShimFile*>(f)->path, static_cast<sqlite3_int64>(region + 1) * region_size)) {
      return SQLITE_IOERR_SHMSIZE;
    }
  }
  return real->pMethods->xShmMap(real, region, region_size, extend, out);
}

int Close(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
int Read(sqlite3_file* f, void* p, int n, sqlite3_int64 o) { return Real(f)->pMethods->xRead(Real(f), p, n, o); }
int Write(sqlite3_file* f, const void* p, int n, sqlite3_int64 o) { return Real(f)->pMethods->xWrite(Real(f), p, n, o); }
int Truncate(sqlite3_file* f, sqlite3_int64 s) { return Real(f)->pMethods->xTruncate(Real(f), s); }
int Sync(sqlite3_file* f, int flags) { return Real(f)->pMethods->xSync(Real(f), flags); }
int FileSize(sqlite3_file* f, sqlite3_int64* s) { return Real(f)->pMethods->xFileSize(Real(f), s); }
int Lock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int CheckReservedLock(sqlite3_file* f, int* r) { return Real(f)->pMethods->xCheckReservedLock(Real(f), r); }
int FileControl(sqlite3_file* f, int op, void* arg) { return Real(f)->pMethods->xFileControl(Real(f), op, arg); }
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) { return Real(f)->pMethods->xDeviceCharacteristics(Real(f)); }
int ShmLock(sqlite3_file* f, int o, int n, int flags) { return Real(f)->pMethods->xShmLock(Real(f), o, n, flags); }
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
int Fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** p) { return Real(f)->pMethods->xFetch(Real(f), o, n, p); }
int Unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) { return Real(f)->pMethods->xUnfetch(Real(f), o, p); }

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* shim = reinterpret_cast<ShimFile*>(f);
  shim->base.pMethods = nullptr;
  shim->path = name;
  sqlite3_file* real = Real(f);
  real->pMethods = nullptr;
  int rc = g_unix->xOpen(g_unix, name, real, flags, out_flags);
  // SQLite calls xClose whenever pMethods is set, even after a failed open.
  if (real->pMethods) {
    // The unix VFS's methods decide what this file can do (version 3: shm, mmap).
    g_methods.iVersion = real->pMethods->iVersion;
    shim->base.pMethods = &g_methods;
  }
  return rc;
}

int Delete(sqlite3_vfs*, const char* n, int sync) { return g_unix->xDelete(g_unix, n, sync); }
int Access(sqlite3_vfs*, const char* n, int flags, int* out) { return g_unix->xAccess(g_unix, n, flags, out); }
int FullPathname(sqlite3_vfs*, const char* n, int size, char* out) { return g_unix->xFullPathname(g_unix, n, size, out); }
void* DlOpen(sqlite3_vfs*, const char* n) { return g_unix->xDlOpen(g_unix, n); }
void DlError(sqlite3_vfs*, int n, char* out) { g_unix->xDlError(g_unix, n, out); }
void (*DlSym(sqlite3_vfs*, void* h, const char* s))(void) { return g_unix->xDlSym(g_unix, h, s); }
void DlClose(sqlite3_vfs*, void* h) { g_unix->xDlClose(g_unix, h); }
int Randomness(sqlite3_vfs*, int n, char* out) { return g_unix->xRandomness(g_unix, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_unix->xSleep(g_unix, us); }
int CurrentTime(sqlite3_vfs*, double* t) { return g_unix->xCurrentTime(g_unix, t); }
int GetLastError(sqlite3_vfs*, int n, char* out) { return g_unix->xGetLastError(g_unix, n, out); }
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) { return g_unix->xCurrentTimeInt64(g_unix, t); }

}  // namespace

void InstallShmSafeVfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_unix = sqlite3_vfs_find(nullptr);
    if (!g_unix || g_unix->iVersion < 2) return;  // keep SQLite's own
    g_methods = sqlite3_io_methods{};
    g_methods.xClose = Close;
    g_methods.xRead = Read;
    g_methods.xWrite = Write;
    g_methods.xTruncate = Truncate;
    g_methods.xSync = Sync;
    g_methods.xFileSize = FileSize;
    g_methods.xLock = Lock;
    g_methods.xUnlock = Unlock;
    g_methods.xCheckReservedLock = CheckReservedLock;
    g_methods.xFileControl = FileControl;
    g_methods.xSectorSize = SectorSize;
    g_methods.xDeviceCharacteristics = DeviceCharacteristics;
    g_methods.xShmMap = ShmMap;
    g_methods.xShmLock = ShmLock;
    g_methods.xShmBarrier = ShmBarrier;
    g_methods.xShmUnmap = ShmUnmap;
    g_methods.xFetch = Fetch;
    g_methods.xUnfetch = Unfetch;
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(kRealOffset) + g_unix->szOsFile;
    g_vfs.mxPathname = g_unix->mxPathname;
    g_vfs.zName = "strata-unix";
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xDlOpen = DlOpen;
    g_vfs.xDlError = DlError;
    g_vfs.xDlSym = DlSym;
    g_vfs.xDlClose = DlClose;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    sqlite3_vfs_register(&g_vfs, /*makeDflt=*/1);
  });
}

}  // namespace strata::sqlite
