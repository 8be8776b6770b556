// Private to control/: tags on the resources Strata owns (instances and
// snapshots, by ARN) and the RDS event log.
#pragma once

#include "control/context.h"

namespace strata::control {

class TagsEvents {
 public:
  explicit TagsEvents(Context& ctx) : ctx_(ctx) {}

  Status AddTags(const std::string& arn, const std::vector<Tag>& tags);
  Status RemoveTags(const std::string& arn, const std::vector<std::string>& keys);
  Result<std::vector<Tag>> ListTags(const std::string& arn);
  std::vector<catalog::EventRecord> DescribeEvents(const EventFilter& filter);

 private:
  Context& ctx_;
};

}  // namespace strata::control
