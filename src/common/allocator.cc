#include "common/allocator.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace strata {

void KeepFreedMemoryForReuse() {
  // Setting either turns off glibc's dynamic thresholds; a failure (another
  // C library) only means the defaults stay.
  (void)::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  (void)::mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

namespace {

// Set only across the exec: "=VALUE" for the GLIBC_TUNABLES the program was
// started with, "-" when it had none.
constexpr const char* kTunablesBefore = "STRATA_GLIBC_TUNABLES_BEFORE";

void RestoreTunables(const std::string& before) {
  if (before.empty() || before[0] != '=') {
    ::unsetenv("GLIBC_TUNABLES");
  } else {
    ::setenv("GLIBC_TUNABLES", before.c_str() + 1, 1);
  }
  ::unsetenv(kTunablesBefore);
}

}  // namespace

std::optional<std::string> TunablesAskingForHugePages(const char* now) {
  std::string tunables = now ? now : "";
  if (tunables.find("glibc.malloc.hugetlb") != std::string::npos) return std::nullopt;
  return (tunables.empty() ? "" : tunables + ":") + "glibc.malloc.hugetlb=1";
}

void AskForHugePages(char** argv) {
  if (const char* before = std::getenv(kTunablesBefore)) {
    RestoreTunables(before);  // this is the image the exec started
    return;
  }
  const char* now = std::getenv("GLIBC_TUNABLES");
  auto tunables = TunablesAskingForHugePages(now);
  if (!tunables) return;
  std::string before = now ? std::string("=") + now : "-";
  ::setenv(kTunablesBefore, before.c_str(), 1);
  ::setenv("GLIBC_TUNABLES", tunables->c_str(), 1);
  ::execv("/proc/self/exe", argv);
  RestoreTunables(before);
}

}  // namespace strata
