#include "cmd/client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "common/credentials.h"

namespace strata::cli {
namespace {

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::string FormEncode(const std::string& s) { return sigv4::UriEncode(s, false); }

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

}  // namespace

Result<Client> Client::Create(const ClientConfig& config) {
  Client c;
  std::string data_dir = config.data_dir;
  c.endpoint_ = config.endpoint_url;
  if (c.endpoint_.empty()) {
    std::ifstream in(std::string(data_dir) + "/endpoint");
    std::getline(in, c.endpoint_);
    if (c.endpoint_.empty()) {
      return Status(kClientError,
                    fmt::format("no endpoint: {}/endpoint is missing (is stratad running with "
                                "--data-dir {}?); or pass --endpoint-url",
                                data_dir, data_dir));
    }
  }
  while (!c.endpoint_.empty() && c.endpoint_.back() == '/') c.endpoint_.pop_back();
  size_t scheme = c.endpoint_.find("://");
  c.host_ = scheme == std::string::npos ? c.endpoint_ : c.endpoint_.substr(scheme + 3);
  c.host_ = c.host_.substr(0, c.host_.find('/'));
  c.region_ = !config.region.empty() ? config.region
              : Env("AWS_DEFAULT_REGION")  ? Env("AWS_DEFAULT_REGION")
              : Env("AWS_REGION")          ? Env("AWS_REGION")
                                           : "us-east-1";
  auto creds = ResolveClientCredentials(std::filesystem::path(data_dir) / "credentials");
  if (!creds) {
    return Status(kClientError, fmt::format("no credentials: {}/credentials is missing and no "
                                            "AWS_ACCESS_KEY_ID is set",
                                            data_dir));
  }
  c.creds_ = *creds;
  return c;
}

Result<HttpResult> Client::Send(const std::string& method, const std::string& path,
                                const std::string& body, const std::string& content_type,
                                const std::string& service) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Status(kClientError, "curl_easy_init failed");
  sigv4::Request req;
  req.method = method;
  req.raw_path = path;
  req.headers = {{"Host", host_}};
  if (!content_type.empty()) req.headers.emplace_back("Content-Type", content_type);
  req.body = body;
  curl_slist* headers = nullptr;
  if (!service.empty()) {
    for (const auto& [k, v] : sigv4::Sign(req, creds_, region_, service, SystemClock().Now())) {
      req.headers.emplace_back(k, v);
    }
  }
  for (const auto& [k, v] : req.headers) {
    if (k != "Host") headers = curl_slist_append(headers, (k + ": " + v).c_str());
  }
  HttpResult result;
  std::string url = endpoint_ + path;
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 300L);
  CURLcode rc = curl_easy_perform(curl.get());
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return Status(kClientError, fmt::format("cannot reach stratad at {}: {}", endpoint_,
                                            curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &result.status);
  return result;
}

Result<HttpResult> Client::Health() { return Send("GET", "/health", "", "", ""); }

Result<pugi::xml_document> Client::Rds(const std::string& action,
                                       const std::map<std::string, std::string>& params) {
  std::string body = "Action=" + FormEncode(action) + "&Version=2014-10-31";
  for (const auto& [k, v] : params) body += "&" + FormEncode(k) + "=" + FormEncode(v);
  ASSIGN_OR_RETURN(auto res, Send("POST", "/", body,
                                  "application/x-www-form-urlencoded; charset=utf-8", "rds"));
  pugi::xml_document doc;
  if (!doc.load_string(res.body.c_str())) {
    return Status(kClientError, fmt::format("unreadable response (HTTP {})", res.status));
  }
  if (res.status != 200) {
    auto err = doc.child("ErrorResponse").child("Error");
    return Status(kServerError,
                  fmt::format("({}) {}", err.child_value("Code"), err.child_value("Message")));
  }
  return doc;
}

Result<nlohmann::json> Client::Data(const std::string& path, const nlohmann::json& body) {
  ASSIGN_OR_RETURN(auto res, Send("POST", path, body.dump(), "application/json", "rds-data"));
  return JsonOf(res);
}

Result<nlohmann::json> Client::Strata(const std::string& method, const std::string& path,
                                      const nlohmann::json& body) {
  ASSIGN_OR_RETURN(auto res, Send(method, path, body.is_null() ? "" : body.dump(),
                                  body.is_null() ? "" : "application/json", "strata"));
  if (res.status != 200 && !nlohmann::json::accept(res.body)) {
    // Not the endpoint's JSON: the path is unknown to this server.
    return Status(kServerError, fmt::format("{} is not served here (HTTP {}): is stratad running with --clock manual?",
                                            path, res.status));
  }
  return JsonOf(res);
}

Result<nlohmann::json> Client::JsonOf(const HttpResult& res) {
  auto j = nlohmann::json::parse(res.body, nullptr, false);
  if (j.is_discarded()) {
    return Status(kClientError, fmt::format("unreadable response (HTTP {})", res.status));
  }
  if (res.status != 200) {
    return Status(kServerError, j.value("message", std::string("error")));
  }
  return j;
}

}  // namespace strata::cli
