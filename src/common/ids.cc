#include "common/ids.h"

#include <openssl/rand.h>

#include <cstdlib>
#include <vector>

#include <fmt/format.h>

namespace strata {
namespace {

std::vector<unsigned char> RandomBytes(size_t n) {
  std::vector<unsigned char> out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    std::abort();  // no entropy means no safe keys: refuse to go on
  }
  return out;
}

std::string FromAlphabet(size_t n, std::string_view alphabet) {
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    for (unsigned char b : RandomBytes(n)) {
      // Rejection sampling keeps the distribution uniform.
      size_t limit = 256 - (256 % alphabet.size());
      if (b < limit && out.size() < n) out.push_back(alphabet[b % alphabet.size()]);
    }
  }
  return out;
}

}  // namespace

std::string RandomHex(size_t bytes) {
  std::string out;
  for (unsigned char b : RandomBytes(bytes)) out += fmt::format("{:02x}", b);
  return out;
}

std::string RandomUuid() {
  auto b = RandomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  std::string h;
  for (unsigned char c : b) h += fmt::format("{:02x}", c);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

std::string RandomAlnumUpper(size_t n) {
  return FromAlphabet(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
}

std::string RandomAlnum(size_t n) {
  return FromAlphabet(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
}

}  // namespace strata
