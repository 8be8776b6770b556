#include "api/wire/xml_writer.h"

#include <gtest/gtest.h>
#include <pugixml.hpp>

namespace strata::api {
namespace {

TEST(XmlWriter, EscapesAndNests) {
  XmlWriter x;
  x.Open("R", "urn:x").Text("A", "<&>\"'").Bool("B", true).Int("C", -3).Open("L").Text("I", "1");
  std::string doc = x.Finish();
  pugi::xml_document d;
  ASSERT_TRUE(d.load_string(doc.c_str())) << doc;
  EXPECT_STREQ(d.child("R").child_value("A"), "<&>\"'");
  EXPECT_STREQ(d.child("R").child_value("B"), "true");
  EXPECT_STREQ(d.child("R").child("L").child_value("I"), "1");
}

TEST(XmlWriter, DropsControlCharactersXmlCannotCarry) {
  XmlWriter x;
  x.Text("A", std::string("a\x01" "b\tc", 5));
  pugi::xml_document d;
  ASSERT_TRUE(d.load_string(x.Finish().c_str()));
  EXPECT_STREQ(d.child_value("A"), "ab\tc");
}

}  // namespace
}  // namespace strata::api
