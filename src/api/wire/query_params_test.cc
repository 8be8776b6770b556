#include "api/wire/query_params.h"

#include <gtest/gtest.h>

namespace strata::api {
namespace {

TEST(QueryParams, ParsesBotocoreFlattening) {
  auto p = QueryParams::Parse(
      "Action=CreateDBSnapshot&Version=2014-10-31&Tags.Tag.2.Key=k2&Tags.Tag.2.Value=v2"
      "&Tags.Tag.1.Key=k&Tags.Tag.1.Value=v%20x&TagKeys.member.1=a&TagKeys.member.10=c"
      "&TagKeys.member.2=b&Filters.Filter.1.Name=db-instance-id"
      "&Filters.Filter.1.Values.Value.1=db1&Filters.Filter.1.Values.Value.2=db2&Empty=");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Get("Action"), "CreateDBSnapshot");
  auto tags = p->Tags();
  ASSERT_TRUE(tags.ok());
  ASSERT_EQ(tags->size(), 2u);
  EXPECT_EQ((*tags)[0].value, "v x");
  EXPECT_EQ((*tags)[1].key, "k2");
  auto keys = p->List("TagKeys", "member");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, (std::vector<std::string>{"a", "b", "c"}));
  auto filters = p->Filters();
  ASSERT_TRUE(filters.ok());
  ASSERT_EQ(filters->size(), 1u);
  EXPECT_EQ((*filters)[0].values, (std::vector<std::string>{"db1", "db2"}));
  EXPECT_EQ(p->Get("Empty"), "");
  EXPECT_TRUE(p->Required("Empty").status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(p->Required("Absent").status().Is(errors::kMissingParameter));
}

TEST(QueryParams, TypedAccessorsNameTheParameter) {
  auto p = QueryParams::Parse("A=12&B=x&C=true&D=99999999999999999999999&E=2026-11-23T09%3A00%3A00Z");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p->Int("A", 0, 35).value(), 12);
  auto bad = p->Int("B", 0, 35);
  EXPECT_TRUE(bad.status().Is(errors::kInvalidParameterValue));
  EXPECT_NE(bad.status().message().find("B"), std::string::npos);
  EXPECT_TRUE(p->Int("A", 0, 10).status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(p->Int("D", 0, 10).status().Is(errors::kInvalidParameterValue));
  EXPECT_EQ(*p->Bool("C").value(), true);
  EXPECT_TRUE(p->Bool("B").status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(p->Time("E").value().has_value());
  EXPECT_TRUE(p->Time("B").status().Is(errors::kInvalidParameterValue));
  EXPECT_FALSE(p->Int("missing", 0, 1).value().has_value());
}

TEST(QueryParams, MalformedInputIsAnErrorNotACrash) {
  EXPECT_TRUE(QueryParams::Parse("A=%ZZ").status().Is(errors::kMalformedQueryString));
  EXPECT_TRUE(QueryParams::Parse("A=%4").status().Is(errors::kMalformedQueryString));
  EXPECT_TRUE(QueryParams::Parse("A=%").status().Is(errors::kMalformedQueryString));
  EXPECT_TRUE(QueryParams::Parse("A=%C3%28").status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(QueryParams::Parse("A=%ED%A0%80").status().Is(errors::kInvalidParameterValue));
  auto rep = QueryParams::Parse("A=1&A=2&&=x&B");
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->Get("A"), "1");
  EXPECT_EQ(rep->Get("B"), "");
  auto idx = QueryParams::Parse("TagKeys.member.99999999999=a");
  ASSERT_TRUE(idx.ok());
  EXPECT_TRUE(idx->List("TagKeys", "member").status().Is(errors::kInvalidParameterValue));
  auto zero = QueryParams::Parse("TagKeys.member.0=a");
  EXPECT_TRUE(zero->List("TagKeys", "member").status().Is(errors::kInvalidParameterValue));
}

TEST(Utf8, ValidatesStrictly) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9t\xC3\xA9"));
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));  // overlong
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));  // truncated
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

}  // namespace
}  // namespace strata::api
