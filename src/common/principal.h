// Who made a request: the authenticated caller behind a verified SigV4
// signature. api/ resolves it once per request (access key id -> principal)
// and hands it to every service handler; the IAM layer will resolve users'
// and roles' keys to it and authorize against it.
//
// It lives in common/ because both api/ (the top layer, which builds it) and
// the layers below that will evaluate policies against it (IAM in control/)
// must name it, and common/ is the one layer every other may include.
#pragma once

#include <string>
#include <string_view>

namespace strata {

struct Principal {
  enum class Kind {
    kRoot,         // the account's root user: every key in stratad's credentials file today
    kUser,         // an IAM user (IAM issue)
    kAssumedRole,  // a role session from STS AssumeRole (later)
  };
  Kind kind = Kind::kRoot;
  std::string account_id;     // 12 digits
  std::string arn;            // arn:aws:iam::<account>:root, ...:user/<name>, arn:aws:sts::<account>:assumed-role/<role>/<session>
  std::string access_key_id;  // the key that signed the request
  std::string name;           // user or role name; empty for root
  std::string session_name;   // assumed-role session; empty otherwise

  // The root user of `account_id`, signing with `access_key_id`.
  static Principal Root(std::string_view account_id, std::string_view access_key_id) {
    Principal p;
    p.kind = Kind::kRoot;
    p.account_id = account_id;
    p.arn = "arn:aws:iam::" + p.account_id + ":root";
    p.access_key_id = access_key_id;
    return p;
  }
};

}  // namespace strata
