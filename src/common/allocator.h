// Process-wide settings of the C library's allocator, applied once at the
// start of main() by the programs that move database files (stratad, the
// repo benchmark).
#pragma once

#include <optional>
#include <string>

namespace strata {

// Keeps memory that is freed for the next allocation instead of handing it
// back to the kernel. glibc returns any freed block over 128 KiB (mmap'd)
// and trims its heaps as soon as their free top passes a threshold, so the
// MiB-sized buffers of every snapshot, restore and manifest were fresh
// memory each time: a page fault and a zeroed page per 4 KiB, which on the
// 2-core benchmark VM costs about 19 us, more than compressing the page.
// After this, blocks up to 32 MiB (glibc's ceiling for the setting) come
// from the heap, and up to 64 MiB of free heap is kept per arena. The cost
// is memory: a process holds near its peak between operations, and freed
// blocks kept in one thread's arena are not reused by another's, so the peak
// itself grows (stratad over bench/pg_bench.py: 399 -> 529 MiB). Measured
// gain: an incremental snapshot of a 1 GiB file 0.28-0.32 s without,
// 0.15-0.25 s with (bench/RESULTS.md).
void KeepFreedMemoryForReuse();

// Runs the program again, once, with glibc's `glibc.malloc.hugetlb=1`
// tunable, so that malloc asks the kernel for transparent huge pages
// (madvise) on the memory it maps: a fresh 8 MiB manifest buffer is then 4
// page faults, not 2048 (an incremental snapshot of a 1 GiB file: 0.20 s ->
// 0.10 s on the benchmark VM). glibc reads tunables only when a program
// starts, hence the exec; call it first in main(). The new image puts
// GLIBC_TUNABLES back as it found it before it returns, so the processes it
// starts (PostgreSQL) get the environment stratad was given. An operator
// who sets glibc.malloc.hugetlb himself is left alone; if the exec fails,
// the program carries on without.
void AskForHugePages(char** argv);

// The GLIBC_TUNABLES AskForHugePages runs the program with, given the one
// it was started with (nullptr: none), or nothing if that one already says
// what glibc.malloc.hugetlb should be.
std::optional<std::string> TunablesAskingForHugePages(const char* now);

}  // namespace strata
