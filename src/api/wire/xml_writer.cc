#include "api/wire/xml_writer.h"

#include <fmt/format.h>

namespace strata::api {

std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even escaped; drop them.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r') continue;
        out.push_back(c);
    }
  }
  return out;
}

XmlWriter& XmlWriter::Open(std::string_view tag, std::string_view xmlns) {
  if (xmlns.empty()) {
    out_ += fmt::format("<{}>", tag);
  } else {
    out_ += fmt::format("<{} xmlns=\"{}\">", tag, XmlEscape(xmlns));
  }
  stack_.emplace_back(tag);
  return *this;
}

XmlWriter& XmlWriter::Close() {
  if (!stack_.empty()) {
    out_ += fmt::format("</{}>", stack_.back());
    stack_.pop_back();
  }
  return *this;
}

XmlWriter& XmlWriter::Text(std::string_view tag, std::string_view value) {
  out_ += fmt::format("<{}>{}</{}>", tag, XmlEscape(value), tag);
  return *this;
}

XmlWriter& XmlWriter::Int(std::string_view tag, int64_t value) {
  out_ += fmt::format("<{}>{}</{}>", tag, value, tag);
  return *this;
}

XmlWriter& XmlWriter::Bool(std::string_view tag, bool value) {
  return Text(tag, value ? "true" : "false");
}

XmlWriter& XmlWriter::Time(std::string_view tag, TimePoint value) {
  return Text(tag, FormatIso8601(value));
}

XmlWriter& XmlWriter::OptText(std::string_view tag, const std::optional<std::string>& value) {
  return value ? Text(tag, *value) : *this;
}

XmlWriter& XmlWriter::OptInt(std::string_view tag, const std::optional<int64_t>& value) {
  return value ? Int(tag, *value) : *this;
}

std::string XmlWriter::Finish() {
  while (!stack_.empty()) Close();
  return std::move(out_);
}

}  // namespace strata::api
