// Errors as values across every layer boundary.
//
// A Status is either OK or carries an ErrorCode from the one catalog in
// error_codes.h (the AWS code and its HTTP status) plus a human message.
// Result<T> is a value or a non-OK Status. Both are [[nodiscard]]: an ignored
// error does not compile quietly. Exceptions never cross a layer; code that
// calls a throwing library catches at its own boundary and returns a Status.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "common/error_codes.h"

namespace strata {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(const ErrorCode& code, std::string message) : code_(&code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == nullptr; }
  // The catalog entry; errors::kOk for an OK status.
  const ErrorCode& code() const { return code_ ? *code_ : errors::kOk; }
  bool Is(const ErrorCode& c) const { return code_ == &c; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // A copy with context put in front of the message ("restore app-copy: ...").
  Status WithContext(std::string_view context) const;

 private:
  const ErrorCode* code_ = nullptr;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}             // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {       // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace strata

#define STRATA_CONCAT_INNER(a, b) a##b
#define STRATA_CONCAT(a, b) STRATA_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                     \
  do {                                            \
    ::strata::Status _st = (expr);                \
    if (!_st.ok()) return _st;                    \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(STRATA_CONCAT(_result_, __LINE__), lhs, expr)
