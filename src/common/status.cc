#include "common/status.h"

namespace strata {

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(code().aws_code) + ": " + message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(*code_, std::string(context) + ": " + message_);
}

}  // namespace strata
