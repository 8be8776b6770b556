// A SQLite VFS over the default "unix" one that gives a WAL index (-shm) file
// real blocks before SQLite maps them.
//
// Why: SQLite extends a -shm file by writing one byte at the end of each
// 4 KiB page, then mmaps it. On a file system with 1 KiB blocks that
// allocates one block of four; the rest are holes, and when the disk is full
// the first store into one of them is a SIGBUS that kills the process
// (reproduced: an open and a read with 8-30 KiB free on a 1 KiB-block ext4).
// This VFS writes the new region's zeros itself first, so a full disk is an
// error return (SQLITE_IOERR_SHMSIZE: "disk I/O error"), never a signal.
// Everything else is the unix VFS's own code.
#pragma once

namespace strata::sqlite {

// Registers the VFS as the process's default (once; later calls do nothing).
// Db::Open calls it.
void InstallShmSafeVfs();

}  // namespace strata::sqlite
