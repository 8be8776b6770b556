// A small streaming XML writer for Query API responses: escapes text, keeps
// the element stack, writes booleans lower-case and times as ISO 8601 Z, the
// way botocore parses them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"

namespace strata::api {

class XmlWriter {
 public:
  // Opens an element, with an optional xmlns.
  XmlWriter& Open(std::string_view tag, std::string_view xmlns = {});
  XmlWriter& Close();  // closes the innermost open element
  XmlWriter& Text(std::string_view tag, std::string_view value);
  XmlWriter& Int(std::string_view tag, int64_t value);
  XmlWriter& Bool(std::string_view tag, bool value);
  XmlWriter& Time(std::string_view tag, TimePoint value);
  // Writes the element only when the value is set.
  XmlWriter& OptText(std::string_view tag, const std::optional<std::string>& value);
  XmlWriter& OptInt(std::string_view tag, const std::optional<int64_t>& value);

  // Closes anything left open and returns the document.
  std::string Finish();

 private:
  std::string out_;
  std::vector<std::string> stack_;
};

std::string XmlEscape(std::string_view s);

}  // namespace strata::api
