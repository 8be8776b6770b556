// The strata CLI's way to its server: SigV4-signed HTTP over libcurl, with
// the endpoint and credentials found the zero-configuration way (DESIGN:
// --data-dir gives DIR/credentials and DIR/endpoint; --endpoint-url and AWS_*
// environment variables override).
#pragma once

#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include "common/sigv4.h"
#include "common/status.h"

namespace strata::cli {

struct ClientConfig {
  std::string data_dir;
  std::string endpoint_url;  // empty: read DATA/endpoint
  std::string region;        // empty: AWS_DEFAULT_REGION / AWS_REGION / us-east-1
};

struct HttpResult {
  long status = 0;
  std::string body;
};

class Client {
 public:
  // A failure that never reached the server.
  static constexpr ErrorCode kClientError{"ClientError", 0};
  // The server answered with an error; the message carries its code and text.
  static constexpr ErrorCode kServerError{"ServerError", 0};

  static Result<Client> Create(const ClientConfig& config);

  const std::string& endpoint() const { return endpoint_; }
  // GET /health without signing.
  Result<HttpResult> Health();
  // An RDS Query API call. Errors become a Status with the server's code and message.
  Result<pugi::xml_document> Rds(const std::string& action,
                                 const std::map<std::string, std::string>& params);
  // An RDS Data API call (path "/Execute", ...).
  Result<nlohmann::json> Data(const std::string& path, const nlohmann::json& body);
  // Strata's own JSON endpoints (signed for the service "strata"): the manual
  // clock. A null body sends none (GET).
  Result<nlohmann::json> Strata(const std::string& method, const std::string& path, const nlohmann::json& body);

 private:
  Result<HttpResult> Send(const std::string& method, const std::string& path,
                          const std::string& body, const std::string& content_type,
                          const std::string& service);
  // A JSON protocol's answer: the document, or its {"message"} as a Status.
  static Result<nlohmann::json> JsonOf(const HttpResult& res);
  std::string endpoint_;
  std::string host_;
  std::string region_;
  sigv4::Credentials creds_;
};

}  // namespace strata::cli
