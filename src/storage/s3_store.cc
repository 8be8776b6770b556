// The S3 driver: objects are S3 objects under BUCKET/PREFIX on any
// S3-compatible store (AWS S3, Ceph RGW, MinIO). Requests are SigV4-signed
// with the same code that verifies Strata's own API, sent with libcurl (one
// reused connection per thread), and retried with exponential backoff and
// jitter on network errors, 5xx and SlowDown.
//
// Atomicity: an S3 PUT is all-or-nothing, so Put needs no temp names. The
// signed payload hash (x-amz-content-sha256) and Content-MD5 make the store
// reject a body damaged in transit; what comes back on Get is checked by the
// repository's own hashes.
#include <curl/curl.h>
#include <openssl/evp.h>

#include <strings.h>

#include <algorithm>
#include <atomic>
#include <sstream>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <pugixml.hpp>

#include "common/clock.h"
#include "common/log.h"
#include "common/sigv4.h"
#include "storage/storage.h"

namespace strata::storage {
namespace {

struct Response {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string Header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (strcasecmp(k.c_str(), std::string(name).c_str()) == 0) return v;
    return "";
  }
};

size_t CollectBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ')) v.erase(v.begin());
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    static_cast<Response*>(out)->headers.emplace_back(line.substr(0, colon), v);
  }
  return size * n;
}

std::string Base64Md5(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_md5(), nullptr);
  unsigned char out[64];
  int len = EVP_EncodeBlock(out, md, static_cast<int>(n));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(len));
}

// One easy handle per thread: libcurl keeps its connection alive between requests.
CURL* ThreadCurl() {
  thread_local std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> handle(curl_easy_init(), curl_easy_cleanup);
  curl_easy_reset(handle.get());
  return handle.get();
}

bool Retryable(long status) { return status == 429 || status >= 500; }

class S3Store final : public ObjectStore {
 public:
  explicit S3Store(S3Config config) : config_(std::move(config)) {
    while (!config_.endpoint.empty() && config_.endpoint.back() == '/') config_.endpoint.pop_back();
    size_t scheme = config_.endpoint.find("://");
    host_ = scheme == std::string::npos ? config_.endpoint : config_.endpoint.substr(scheme + 3);
    host_ = host_.substr(0, host_.find('/'));
    if (!config_.path_style) {
      // Virtual-hosted style: BUCKET.host.
      std::string scheme_part = scheme == std::string::npos ? "https://" : config_.endpoint.substr(0, scheme + 3);
      host_ = config_.bucket + "." + host_;
      base_url_ = scheme_part + host_;
    } else {
      base_url_ = config_.endpoint;
    }
  }

  Status CheckBucket() {
    ASSIGN_OR_RETURN(auto r, Send("HEAD", "", "", {}, ""));
    if (r.status == 200) return Status::Ok();
    if (r.status == 404) {
      return Status(errors::kInvalidParameterValue, fmt::format("S3 bucket {} does not exist at {}", config_.bucket,
                                                                config_.endpoint));
    }
    return Status(errors::kIoError, fmt::format("S3 bucket {} at {}: HTTP {}", config_.bucket, config_.endpoint,
                                                r.status));
  }

  Status CreateBucket() {
    ASSIGN_OR_RETURN(auto r, Send("PUT", "", "", {}, ""));
    if (r.status == 200 || r.status == 409) return Status::Ok();  // 409: already ours
    return Failure("CREATE BUCKET", config_.bucket, r);
  }

  Status Put(const std::string& key, std::string_view bytes) override {
    if (bytes.size() > config_.multipart_threshold) return PutMultipart(key, bytes);
    ASSIGN_OR_RETURN(auto r, Send("PUT", ObjectPath(key), "", {{"Content-MD5", Base64Md5(bytes)}}, bytes));
    if (r.status == 200) return Status::Ok();
    return Failure("PUT", key, r);
  }

  // Streams an object: held until it passes the multipart threshold, then
  // sent in parts of multipart_part_size as they fill, one at a time; the
  // object appears only when CompleteMultipartUpload succeeds. An upload
  // that fails or is never committed is aborted.
  class Writer final : public ObjectWriter {
   public:
    Writer(S3Store* store, std::string key) : store_(store), key_(std::move(key)) {}
    ~Writer() override {
      if (!upload_query_.empty() && !committed_) store_->AbortUpload(key_, upload_query_);
    }
    Status Append(std::string_view bytes) override {
      if (failed_) return Status(errors::kIoError, "S3 upload of " + key_ + " failed before");
      held_ += bytes;
      if (upload_query_.empty() && held_.size() <= store_->config_.multipart_threshold) return Status::Ok();
      if (upload_query_.empty()) {
        auto query = store_->StartUpload(key_);
        if (!query.ok()) return Fail(query.status());
        upload_query_ = *query;
      }
      const size_t part = store_->config_.multipart_part_size;
      size_t sent = 0;
      while (held_.size() - sent >= part) {
        RETURN_IF_ERROR(SendPart(std::string_view(held_).substr(sent, part)));
        sent += part;
      }
      held_.erase(0, sent);
      return Status::Ok();
    }
    Status Commit() override {
      if (failed_) return Status(errors::kIoError, "S3 upload of " + key_ + " failed before");
      if (upload_query_.empty()) {
        Status st = store_->Put(key_, held_);
        committed_ = st.ok();
        return st;
      }
      if (!held_.empty()) RETURN_IF_ERROR(SendPart(held_));
      RETURN_IF_ERROR(Fail(store_->CompleteUpload(key_, upload_query_, etags_)));
      committed_ = true;
      return Status::Ok();
    }

   private:
    Status SendPart(std::string_view bytes) {
      auto etag = store_->UploadPart(key_, upload_query_, etags_.size() + 1, bytes);
      if (!etag.ok()) return Fail(etag.status());
      etags_.push_back(*etag);
      return Status::Ok();
    }
    Status Fail(Status st) {
      if (!st.ok()) failed_ = true;
      return st;
    }
    S3Store* store_;
    std::string key_;
    std::string held_;
    std::string upload_query_;  // "uploadId=..." once the upload has begun
    std::vector<std::string> etags_;
    bool failed_ = false;
    bool committed_ = false;
  };

  Result<std::unique_ptr<ObjectWriter>> NewWriter(const std::string& key) override {
    return std::unique_ptr<ObjectWriter>(std::make_unique<Writer>(this, key));
  }

  // The query naming a new multipart upload of `key` ("uploadId=...").
  Result<std::string> StartUpload(const std::string& key) {
    ASSIGN_OR_RETURN(auto init, Send("POST", ObjectPath(key), "uploads=", {}, ""));
    if (init.status != 200) return Failure("CREATE MULTIPART", key, init);
    pugi::xml_document doc;
    doc.load_string(init.body.c_str());
    std::string upload_id = doc.child("InitiateMultipartUploadResult").child_value("UploadId");
    if (upload_id.empty()) return Status(errors::kIoError, "S3 multipart upload: no UploadId for " + key);
    return "uploadId=" + sigv4::UriEncode(upload_id, false);
  }
  // The part's ETag.
  Result<std::string> UploadPart(const std::string& key, const std::string& id_query, size_t number,
                                 std::string_view bytes) {
    ASSIGN_OR_RETURN(auto r, Send("PUT", ObjectPath(key), fmt::format("partNumber={}&{}", number, id_query),
                                  {{"Content-MD5", Base64Md5(bytes)}}, bytes));
    if (r.status != 200) return Failure("UPLOAD PART", key, r);
    return r.Header("ETag");
  }
  Status CompleteUpload(const std::string& key, const std::string& id_query, const std::vector<std::string>& etags) {
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < etags.size(); ++i) {
      xml += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", i + 1, etags[i]);
    }
    xml += "</CompleteMultipartUpload>";
    ASSIGN_OR_RETURN(auto done, Send("POST", ObjectPath(key), id_query, {}, xml));
    // 200 can still carry an error document (S3 documents this for Complete).
    if (done.status != 200 || done.body.find("<Error>") != std::string::npos) {
      return Failure("COMPLETE MULTIPART", key, done);
    }
    return Status::Ok();
  }
  // Frees the parts of an upload that will not complete. Its failure is
  // logged, not returned: the caller reports the upload's own error, and
  // AbortStaleUploads frees the parts later.
  void AbortUpload(const std::string& key, const std::string& id_query) {
    auto r = Send("DELETE", ObjectPath(key), id_query, {}, "");
    if (!r.ok() || r->status / 100 != 2) {
      log::Warn("s3: abort of a failed multipart upload failed; its parts stay until the stale-upload sweep",
                {{"key", key}, {"error", r.ok() ? fmt::format("HTTP {}", r->status) : r.status().ToString()}});
    }
  }

  // Large objects go up in parts, up to 4 at once; the object appears only
  // when CompleteMultipartUpload succeeds, and a failed upload is aborted.
  Status PutMultipart(const std::string& key, std::string_view bytes) {
    ASSIGN_OR_RETURN(std::string id_query, StartUpload(key));
    const size_t part = config_.multipart_part_size;
    const size_t parts = (bytes.size() + part - 1) / part;
    std::vector<std::string> etags(parts);
    std::vector<Status> results(parts);
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i; (i = next++) < parts;) {
        auto etag = UploadPart(key, id_query, i + 1, bytes.substr(i * part, part));
        if (etag.ok()) etags[i] = *etag;
        else results[i] = etag.status();
      }
    };
    std::vector<std::thread> threads;
    for (size_t t = 0; t < std::min<size_t>(4, parts); ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    Status failed = Status::Ok();
    for (const auto& st : results)
      if (!st.ok() && failed.ok()) failed = st;
    if (failed.ok()) failed = CompleteUpload(key, id_query, etags);
    if (!failed.ok()) AbortUpload(key, id_query);
    return failed;
  }

  // Aborts multipart uploads under the prefix older than `age` (left by a
  // crash mid-upload); they are invisible to List but cost storage.
  void AbortStaleUploads(std::chrono::hours age) {
    auto r = Send("GET", "", "prefix=" + sigv4::UriEncode(config_.prefix, false) + "&uploads=", {}, "");
    if (!r.ok() || r->status != 200) return;
    pugi::xml_document doc;
    if (!doc.load_string(r->body.c_str())) return;
    TimePoint cutoff = SystemClock().Now() - age;
    for (auto u : doc.child("ListMultipartUploadsResult").children("Upload")) {
      auto started = ParseIso8601(u.child_value("Initiated"));
      if (!started || *started > cutoff) continue;
      std::string key = u.child_value("Key");
      // Best effort: an upload not aborted now is found again by the next sweep.
      (void)Send("DELETE", sigv4::UriEncode(key, true), "uploadId=" + sigv4::UriEncode(u.child_value("UploadId"), false),
                 {}, "");
    }
  }

  Result<std::string> Get(const std::string& key) override {
    ASSIGN_OR_RETURN(auto r, Send("GET", ObjectPath(key), "", {}, ""));
    if (r.status == 200) return std::move(r.body);
    if (r.status == 404) return Status(errors::kObjectNotFound, fmt::format("{}: no object {}", Describe(), key));
    return Failure("GET", key, r);
  }

  Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length) override {
    if (length == 0) return std::string();
    ASSIGN_OR_RETURN(auto r, Send("GET", ObjectPath(key), "",
                                  {{"Range", fmt::format("bytes={}-{}", offset, offset + length - 1)}}, ""));
    if (r.status == 206 || r.status == 200) {
      if (r.status == 200) r.body = r.body.substr(std::min<uint64_t>(offset, r.body.size()), length);
      if (r.body.size() == length) return std::move(r.body);
    }
    if (r.status == 206 || r.status == 200 || r.status == 416) {
      return Status(errors::kCorruption, fmt::format("{}: {} is shorter than {} bytes at {}", Describe(), key, length,
                                                     offset));
    }
    if (r.status == 404) return Status(errors::kObjectNotFound, fmt::format("{}: no object {}", Describe(), key));
    return Failure("GET", key, r);
  }

  Result<std::vector<ObjectInfo>> List(const std::string& prefix) override {
    std::vector<ObjectInfo> out;
    std::string token;
    for (;;) {
      std::string query = "list-type=2&prefix=" + sigv4::UriEncode(config_.prefix + prefix, false);
      if (!token.empty()) query += "&continuation-token=" + sigv4::UriEncode(token, false);
      ASSIGN_OR_RETURN(auto r, Send("GET", "", query, {}, ""));
      if (r.status != 200) return Failure("LIST", prefix, r);
      pugi::xml_document doc;
      if (!doc.load_string(r.body.c_str())) return Status(errors::kIoError, "S3 list: unreadable response");
      auto result = doc.child("ListBucketResult");
      for (auto c : result.children("Contents")) {
        std::string key = c.child_value("Key");
        if (key.rfind(config_.prefix, 0) != 0) continue;
        out.push_back({key.substr(config_.prefix.size()), std::strtoull(c.child_value("Size"), nullptr, 10)});
      }
      if (std::string(result.child_value("IsTruncated")) != "true") break;
      token = result.child_value("NextContinuationToken");
      if (token.empty()) break;
    }
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status Delete(const std::string& key) override {
    ASSIGN_OR_RETURN(auto r, Send("DELETE", ObjectPath(key), "", {}, ""));
    if (r.status == 204 || r.status == 200 || r.status == 404) return Status::Ok();
    return Failure("DELETE", key, r);
  }

  // DeleteObjects, up to 1000 keys a request (Quiet: only errors come back).
  Status DeleteMany(const std::vector<std::string>& keys) override {
    for (size_t i = 0; i < keys.size(); i += 1000) {
      std::string xml = "<Delete><Quiet>true</Quiet>";
      for (size_t j = i; j < std::min(keys.size(), i + 1000); ++j) {
        pugi::xml_document esc;
        esc.append_child("Key").text().set((config_.prefix + keys[j]).c_str());
        std::ostringstream out;
        esc.save(out, "", pugi::format_raw | pugi::format_no_declaration);
        xml += "<Object>" + out.str() + "</Object>";
      }
      xml += "</Delete>";
      ASSIGN_OR_RETURN(auto r, Send("POST", "", "delete=", {{"Content-MD5", Base64Md5(xml)}}, xml));
      if (r.status != 200) return Failure("DELETE OBJECTS", keys[i], r);
      pugi::xml_document doc;
      if (doc.load_string(r.body.c_str())) {
        for (auto e : doc.child("DeleteResult").children("Error")) {
          std::string code = e.child_value("Code");
          if (code == "NoSuchKey") continue;
          return Status(errors::kIoError, fmt::format("DELETE {} on {}: {} {}", e.child_value("Key"), Describe(), code,
                                                      e.child_value("Message")));
        }
      }
    }
    return Status::Ok();
  }

  Result<std::optional<uint64_t>> Stat(const std::string& key) override {
    ASSIGN_OR_RETURN(auto r, Send("HEAD", ObjectPath(key), "", {}, ""));
    if (r.status == 404) return std::optional<uint64_t>();
    if (r.status != 200) return Failure("HEAD", key, r);
    // A missing or malformed length reads as 0 rather than throwing.
    return std::optional<uint64_t>(std::strtoull(r.Header("Content-Length").c_str(), nullptr, 10));
  }

  std::string Describe() const override {
    return fmt::format("s3://{}/{} at {}", config_.bucket, config_.prefix, config_.endpoint);
  }

 private:
  std::string ObjectPath(const std::string& key) const { return sigv4::UriEncode(config_.prefix + key, true); }

  Status Failure(std::string_view op, const std::string& key, const Response& r) const {
    pugi::xml_document doc;
    std::string code, message;
    if (doc.load_string(r.body.c_str())) {
      code = doc.child("Error").child_value("Code");
      message = doc.child("Error").child_value("Message");
    }
    return Status(errors::kIoError, fmt::format("{} {} on {}: HTTP {} {} {}", op, key, Describe(), r.status, code,
                                                message));
  }

  // One request, retried: network errors, 5xx and SlowDown, up to
  // max_attempts with exponential backoff (100 ms doubling, capped at 5 s)
  // and full jitter.
  Result<Response> Send(const std::string& method, const std::string& object_path, const std::string& query,
                        const std::vector<std::pair<std::string, std::string>>& extra, std::string_view body) {
    std::string path = config_.path_style ? "/" + config_.bucket + (object_path.empty() ? "" : "/" + object_path)
                                          : "/" + object_path;
    thread_local std::mt19937_64 rng(std::random_device{}());
    std::string last_error;
    for (int attempt = 1;; ++attempt) {
      auto r = SendOnce(method, path, query, extra, body);
      if (r.ok() && !Retryable(r->status)) return r;
      last_error = r.ok() ? fmt::format("HTTP {}", r->status) : r.status().message();
      if (attempt >= config_.max_attempts) break;
      int64_t cap = std::min<int64_t>(5000, 100LL << (attempt - 1));
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(0, cap)(rng)));
    }
    return Status(errors::kIoError, fmt::format("{} {}{} on {}: gave up after {} attempts: {}", method, path,
                                                query.empty() ? "" : "?" + query, config_.endpoint,
                                                config_.max_attempts, last_error));
  }

  Result<Response> SendOnce(const std::string& method, const std::string& path, const std::string& query,
                            const std::vector<std::pair<std::string, std::string>>& extra, std::string_view body) {
    sigv4::Request req;
    req.method = method;
    req.raw_path = path;
    req.raw_query = query;
    req.headers = {{"Host", host_}};
    for (const auto& h : extra) req.headers.push_back(h);
    req.body = body;
    sigv4::SignOptions opts;
    opts.s3 = true;
    auto signed_headers = sigv4::Sign(req, config_.credentials, config_.region, "s3", SystemClock().Now(), opts);
    curl_slist* headers = nullptr;
    for (const auto& [k, v] : req.headers)
      if (k != "Host") headers = curl_slist_append(headers, (k + ": " + v).c_str());
    for (const auto& [k, v] : signed_headers) headers = curl_slist_append(headers, (k + ": " + v).c_str());
    // libcurl would add these on its own; S3 must not see them unsigned.
    headers = curl_slist_append(headers, "Expect:");
    headers = curl_slist_append(headers, "Content-Type:");
    CURL* curl = ThreadCurl();
    Response resp;
    std::string url = base_url_ + path + (query.empty() ? "" : "?" + query);
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    if (method == "PUT" || method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CollectBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp.body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CollectHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &resp);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    // A stalled transfer (under 1 KiB/s for stall_timeout_seconds) is cut and retried.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(config_.stall_timeout_seconds));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) return Status(errors::kIoError, curl_easy_strerror(rc));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
  }

  S3Config config_;
  std::string host_;
  std::string base_url_;
};

}  // namespace

Result<S3Config> ParseS3Url(std::string_view url) {
  if (url.rfind("s3://", 0) != 0) return Status(errors::kInvalidParameterValue, "an S3 repo is s3://BUCKET[/PREFIX]");
  std::string rest(url.substr(5));
  S3Config c;
  auto slash = rest.find('/');
  c.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) c.prefix = rest.substr(slash + 1);
  if (!c.prefix.empty() && c.prefix.back() != '/') c.prefix += '/';
  if (c.bucket.empty()) return Status(errors::kInvalidParameterValue, "an S3 repo needs a bucket: s3://BUCKET[/PREFIX]");
  return c;
}

Status CreateS3Bucket(const S3Config& config) {
  S3Store store(config);
  return store.CreateBucket();
}

Result<std::unique_ptr<ObjectStore>> OpenS3Store(const S3Config& config) {
  if (config.endpoint.empty()) return Status(errors::kInvalidParameterValue, "an S3 repo needs --s3-endpoint");
  if (config.credentials.access_key_id.empty()) {
    return Status(errors::kInvalidParameterValue,
                  "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in stratad's environment");
  }
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto store = std::make_unique<S3Store>(config);
  RETURN_IF_ERROR(store->CheckBucket());
  store->AbortStaleUploads(std::chrono::hours(24));
  return std::unique_ptr<ObjectStore>(std::move(store));
}

}  // namespace strata::storage
