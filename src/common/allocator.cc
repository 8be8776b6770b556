#include "common/allocator.h"

#include <malloc.h>

namespace strata {

void KeepFreedMemoryForReuse() {
  // Setting either turns off glibc's dynamic thresholds; a failure (another
  // C library) only means the defaults stay.
  (void)::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  (void)::mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

}  // namespace strata
