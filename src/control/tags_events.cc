#include "control/tags_events.h"

#include <fmt/format.h>

namespace strata::control {
namespace {

// The canonical ARN of a taggable resource this server owns, checked against the catalog.
Result<std::string> ResolveTaggable(catalog::Catalog& catalog, const ArnOwner& owner, const std::string& arn_text) {
  auto any = ParseArn(arn_text);
  std::string_view type = any ? std::string_view(any->resource_type) : std::string_view("db");
  if (type != "db" && type != "snapshot") {
    return InvalidValue(fmt::format("Invalid resource name {}: resource type '{}' cannot be tagged", arn_text, type));
  }
  ASSIGN_OR_RETURN(auto arn, ParseOwnArn(arn_text, owner, type));
  if (type == "db") {
    RETURN_IF_ERROR(catalog.GetInstance(arn.resource_id).status());
  } else {
    RETURN_IF_ERROR(catalog.GetSnapshot(arn.resource_id).status());
  }
  return arn.Text();
}

}  // namespace

Status TagsEvents::AddTags(const std::string& arn, const std::vector<Tag>& tags) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*ctx_.catalog, ctx_.Owner(), arn));
  for (const auto& t : tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  return ctx_.catalog->InTransaction([&]() -> Status {
    auto existing = ctx_.catalog->ListTags(resolved);
    size_t count = existing.size();
    for (const auto& t : tags) {
      bool known = false;
      for (const auto& e : existing) known = known || e.key == t.key;
      if (!known) ++count;
    }
    if (count > kMaxTagsPerResource) {
      return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
    }
    return ctx_.catalog->SetTags(resolved, tags);
  });
}

Status TagsEvents::RemoveTags(const std::string& arn, const std::vector<std::string>& keys) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*ctx_.catalog, ctx_.Owner(), arn));
  return ctx_.catalog->RemoveTags(resolved, keys);
}

Result<std::vector<Tag>> TagsEvents::ListTags(const std::string& arn) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*ctx_.catalog, ctx_.Owner(), arn));
  return ctx_.catalog->ListTags(resolved);
}

std::vector<catalog::EventRecord> TagsEvents::DescribeEvents(const EventFilter& f) {
  catalog::EventQuery q;
  TimePoint now = ctx_.Now();
  q.end = f.end.value_or(now);
  // RDS: without StartTime, Duration minutes back from the end (default 60).
  q.start = f.start.value_or(q.end - std::chrono::minutes(f.duration_minutes.value_or(60)));
  q.source_type = f.source_type;
  q.source_id = f.source_id;
  q.categories = f.categories;
  return ctx_.catalog->ListEvents(q);
}

}  // namespace strata::control
