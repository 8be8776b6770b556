#include "api/rds/rds_query.h"

#include <gtest/gtest.h>
#include <pugixml.hpp>

namespace strata::api {
namespace {

TEST(RdsErrorXml, IsTheAwsEnvelope) {
  std::string doc = RdsErrorXml(Status(errors::kDBInstanceNotFound, "DBInstance x not found."), "rid");
  pugi::xml_document d;
  ASSERT_TRUE(d.load_string(doc.c_str()));
  auto e = d.child("ErrorResponse").child("Error");
  EXPECT_STREQ(e.child_value("Type"), "Sender");
  EXPECT_STREQ(e.child_value("Code"), "DBInstanceNotFound");
  EXPECT_STREQ(d.child("ErrorResponse").child_value("RequestId"), "rid");
}

}  // namespace
}  // namespace strata::api
