// The parameters of a Query API request (form body or query string), parsed
// as botocore serializes them: flat keys, lists as "Name.member.N" or
// "Name.<LocationName>.N", structures as "Name.Field". Typed accessors return
// the AWS error for the parameter by name (MissingParameter,
// InvalidParameterValue), so handlers never build those messages themselves.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace strata::api {

struct Filter {
  std::string name;
  std::vector<std::string> values;
};

struct KeyValue {
  std::string key;
  std::string value;
};

class QueryParams {
 public:
  // Parses application/x-www-form-urlencoded text. Malformed percent-encoding
  // -> MalformedQueryString; a value that is not UTF-8 -> InvalidParameterValue.
  // A repeated key keeps its first value, as AWS does.
  static Result<QueryParams> Parse(std::string_view text);
  // Adds the pairs of `more` that are not already present (query string + body).
  void Merge(const QueryParams& more);

  bool Has(std::string_view key) const;
  std::optional<std::string> Get(std::string_view key) const;
  Result<std::string> Required(std::string_view key) const;
  Result<std::optional<int64_t>> Int(std::string_view key, int64_t min, int64_t max) const;
  Result<std::optional<bool>> Bool(std::string_view key) const;
  Result<std::optional<TimePoint>> Time(std::string_view key) const;

  // "Key.Member.1", "Key.Member.2", ... in index order. Member is the list's
  // location name ("member", "Value", "EventCategory").
  Result<std::vector<std::string>> List(std::string_view key, std::string_view member) const;
  // "Tags.Tag.N.Key" / "Tags.Tag.N.Value".
  Result<std::vector<KeyValue>> Tags(std::string_view key = "Tags") const;
  // "Filters.Filter.N.Name" / "Filters.Filter.N.Values.Value.M".
  Result<std::vector<Filter>> Filters(std::string_view key = "Filters") const;

  const std::map<std::string, std::string, std::less<>>& all() const { return values_; }

 private:
  // Indices N present under "prefix.N..." in ascending order.
  Result<std::vector<int>> Indices(std::string_view prefix) const;
  std::map<std::string, std::string, std::less<>> values_;
};

// Percent-decoding for form values ('+' is a space). nullopt if malformed.
std::optional<std::string> FormDecode(std::string_view s);
bool IsValidUtf8(std::string_view s);

}  // namespace strata::api
