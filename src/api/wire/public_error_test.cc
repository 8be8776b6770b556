#include "api/wire/public_error.h"

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <nlohmann/json.hpp>

#include "api/rds/rds_query.h"
#include "api/wire/json_errors.h"

namespace strata::api {
namespace {

// Detail of the kind the layers below write into their messages.
const Status kInternalOnes[] = {
    Status(errors::kIoError, "open /var/lib/strata/repo/packs/ab: Permission denied"),
    Status(errors::kNoSpace, "write /var/lib/strata/tmp/x: No space left on device"),
    Status(errors::kCorruption, "/srv/repo/index/12 checksum mismatch"),
    Status(errors::kObjectNotFound, "no object packs/ab/cd"),
    Status(errors::kKeyError, "/etc/strata/key: wrong key"),
    Status(errors::kPortInUse, "could not bind 127.0.0.1:5432: Address already in use"),
    Status(errors::kInternalFailure, "psql failed (2): ERROR: relation \"secret\" does not exist in SELECT * FROM t"),
    Status(errors::kDataInternal, "internal error: std::bad_alloc"),
};

void ExpectNoDetail(const std::string& text, const Status& original) {
  EXPECT_EQ(text.find(original.message()), std::string::npos) << text;
  for (const char* leak : {"/var", "/srv", "/etc", "Permission", "errno", "SELECT", "bad_alloc", "Address"}) {
    EXPECT_EQ(text.find(leak), std::string::npos) << leak << " in " << text;
  }
}

TEST(PublicError, InternalCodesBecomeInternalFailureWithTheRequestIdOnly) {
  for (const Status& st : kInternalOnes) {
    Status pub = PublicError(st, "req-123");
    EXPECT_TRUE(pub.Is(errors::kInternalFailure)) << st.ToString();
    EXPECT_NE(pub.message().find("req-123"), std::string::npos);
    ExpectNoDetail(pub.message(), st);
  }
}

TEST(PublicError, ClientErrorsKeepTheirCodeAndMessage) {
  for (const Status& st : {Status(errors::kDBInstanceNotFound, "DBInstance x not found."),
                           Status(errors::kStorageQuotaExceeded, "No space left on device for the snapshot"),
                           Status(errors::kDataBadRequest, "near \"SELEC\": syntax error"),
                           Status(errors::kSignatureDoesNotMatch, "Credential should be scoped to correct service")}) {
    Status pub = PublicError(st, "req-1");
    EXPECT_TRUE(pub.Is(st.code())) << st.ToString();
    EXPECT_EQ(pub.message(), st.message());
  }
}

TEST(PublicError, TheRdsErrorDocumentCarriesNoDetail) {
  for (const Status& st : kInternalOnes) {
    std::string doc = RdsErrorXml(PublicError(st, "req-9"), "req-9");
    pugi::xml_document d;
    ASSERT_TRUE(d.load_string(doc.c_str())) << doc;
    auto e = d.child("ErrorResponse").child("Error");
    EXPECT_STREQ(e.child_value("Code"), "InternalFailure");
    EXPECT_STREQ(e.child_value("Type"), "Receiver");
    EXPECT_STREQ(d.child("ErrorResponse").child_value("RequestId"), "req-9");
    ExpectNoDetail(doc, st);
  }
}

TEST(PublicError, TheJsonErrorCarriesNoDetail) {
  for (const Status& st : kInternalOnes) {
    JsonResponse r = JsonError(PublicError(st, "req-7", errors::kDataInternal));
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(r.error_type, "InternalServerErrorException");
    auto body = nlohmann::json::parse(r.body);
    EXPECT_NE(body["message"].get<std::string>().find("req-7"), std::string::npos);
    ExpectNoDetail(r.body, st);
  }
}

}  // namespace
}  // namespace strata::api
