// A byte buffer whose storage is aligned for O_DIRECT reads and writes, kept
// by its owner (usually per thread) so that large transfers do not take
// fresh memory each time.
#pragma once

#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace strata {

// O_DIRECT offsets, lengths and buffer addresses are multiples of this (the
// largest logical block size Strata meets).
inline constexpr size_t kDirectIoAlign = 4096;

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t capacity) { Grow(capacity, false); }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void append(std::string_view bytes) {
    if (size_ + bytes.size() > capacity_) Grow(2 * (size_ + bytes.size()), true);
    std::memcpy(data_ + size_, bytes.data(), bytes.size());
    size_ += bytes.size();
  }
  // Room for n bytes to be filled in place; the contents are not kept.
  char* Space(size_t n) {
    if (n > capacity_) Grow(n, false);
    size_ = 0;
    return data_;
  }
  // Gives the memory back (a buffer grown for one large transfer).
  void Release() {
    std::free(data_);
    data_ = nullptr;
    size_ = capacity_ = 0;
  }
  void clear() { size_ = 0; }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  const char* data() const { return data_; }

 private:
  void Grow(size_t capacity, bool keep) {
    capacity = (capacity + kDirectIoAlign - 1) / kDirectIoAlign * kDirectIoAlign;
    char* bigger = static_cast<char*>(std::aligned_alloc(kDirectIoAlign, capacity));
    if (!bigger) throw std::bad_alloc();
    if (keep && size_) std::memcpy(bigger, data_, size_);
    std::free(data_);
    data_ = bigger;
    capacity_ = capacity;
  }
  char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace strata
