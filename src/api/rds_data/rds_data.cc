#include "api/rds_data/rds_data.h"

#include "api/wire/public_error.h"

#include <openssl/evp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace strata::api {
namespace {

using nlohmann::json;

constexpr size_t kMaxSqlLength = 65536;

Status BadRequest(std::string msg) { return Status(errors::kDataBadRequest, std::move(msg)); }

Result<std::string> RequiredString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
    return BadRequest(fmt::format("Parameter {} is required and must be a string", key));
  }
  return it->get<std::string>();
}

std::optional<std::string> OptionalString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Result<engine::Value> FieldToValue(const json& f) {
  if (!f.is_object() || f.size() != 1) {
    return BadRequest("Each parameter value must set exactly one Field member");
  }
  const auto& [key, v] = *f.items().begin();
  if (key == "isNull") return engine::Value(std::monostate{});
  if (key == "booleanValue" && v.is_boolean()) return engine::Value(v.get<bool>());
  if (key == "longValue" && v.is_number_unsigned()) {
    // JSON numbers above INT64_MAX parse as unsigned; they would wrap.
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return BadRequest(fmt::format("longValue {} is out of range: a longValue is a signed 64-bit integer",
                                    v.get<uint64_t>()));
    }
    return engine::Value(static_cast<int64_t>(v.get<uint64_t>()));
  }
  if (key == "longValue" && v.is_number_integer()) return engine::Value(v.get<int64_t>());
  if (key == "longValue" && v.is_number_float()) {
    // Integers beyond the 64-bit range (below INT64_MIN, above UINT64_MAX) parse as floats.
    return BadRequest("longValue is out of range or not an integer: a longValue is a signed 64-bit integer");
  }
  if (key == "doubleValue" && v.is_number()) {
    double d = v.get<double>();
    if (!std::isfinite(d)) return BadRequest("doubleValue must be a finite number");
    return engine::Value(d);
  }
  if (key == "stringValue" && v.is_string()) return engine::Value(v.get<std::string>());
  if (key == "blobValue" && v.is_string()) {
    auto bytes = Base64Decode(v.get<std::string>());
    if (!bytes) return BadRequest("blobValue is not valid base64");
    return engine::Value(engine::Blob{std::move(*bytes)});
  }
  if (key == "arrayValue") return BadRequest("Array parameters are not supported by the sqlite engine");
  return BadRequest(fmt::format("Unsupported or mistyped Field member: {}", key));
}

Result<std::vector<engine::Parameter>> Parameters(const json& list) {
  std::vector<engine::Parameter> out;
  if (list.is_null()) return out;
  if (!list.is_array()) return BadRequest("parameters must be a list");
  for (const auto& p : list) {
    if (!p.is_object()) return BadRequest("Each parameter must be an object");
    auto name = OptionalString(p, "name");
    if (!name || name->empty()) return BadRequest("Each parameter needs a name");
    auto value = p.find("value");
    if (value == p.end()) return BadRequest(fmt::format("Parameter {} has no value", *name));
    ASSIGN_OR_RETURN(auto v, FieldToValue(*value));
    out.push_back({*name, std::move(v)});
  }
  return out;
}

json ValueToField(const engine::Value& v) {
  return std::visit(
      [](const auto& x) -> json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return {{"isNull", true}};
        if constexpr (std::is_same_v<T, bool>) return {{"booleanValue", x}};
        if constexpr (std::is_same_v<T, int64_t>) return {{"longValue", x}};
        if constexpr (std::is_same_v<T, double>) {
          if (!std::isfinite(x)) return {{"stringValue", fmt::format("{}", x)}};
          return {{"doubleValue", x}};
        }
        if constexpr (std::is_same_v<T, std::string>) return {{"stringValue", x}};
        if constexpr (std::is_same_v<T, engine::Blob>) return {{"blobValue", Base64Encode(x.bytes)}};
      },
      v);
}

json ValueToPlain(const engine::Value& v) {
  return std::visit(
      [](const auto& x) -> json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return nullptr;
        else if constexpr (std::is_same_v<T, engine::Blob>) return Base64Encode(x.bytes);
        else return x;
      },
      v);
}

control::DataTarget Target(const json& req, const std::string& arn) {
  return {arn, OptionalString(req, "database").value_or("")};
}

// A member that, when present, must have the type the model gives it.
Status CheckOptional(const json& req, const char* key, json::value_t type) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return Status::Ok();
  bool ok = type == json::value_t::object ? it->is_object()
            : type == json::value_t::boolean ? it->is_boolean()
            : type == json::value_t::string ? it->is_string()
            : type == json::value_t::array ? it->is_array()
            : false;
  if (!ok) return BadRequest(fmt::format("Parameter {} has the wrong type", key));
  return Status::Ok();
}

bool OptionalBool(const json& req, const char* key) {
  auto it = req.find(key);
  return it != req.end() && it->is_boolean() && it->get<bool>();
}

// Everything of an ExecuteStatement request, read and checked before the
// statement runs: once it has run (and, outside a transaction, committed)
// nothing may fail but what the database itself answers.
struct ExecuteRequest {
  std::string arn;
  control::DataTarget target;
  std::string sql;
  std::vector<engine::Parameter> params;
  std::optional<std::string> transaction_id;
  bool records_as_json = false;
  bool include_metadata = false;
};

Result<std::string> CheckedSql(const json& req) {
  ASSIGN_OR_RETURN(auto sql, RequiredString(req, "sql"));
  if (sql.size() > kMaxSqlLength) return BadRequest("sql must be at most 65536 characters");
  // SQLite would stop reading at a NUL and PostgreSQL's protocol cannot carry one.
  if (sql.find('\0') != std::string::npos) return BadRequest("The SQL text contains a NUL character.");
  return sql;
}

Status CheckCommonMembers(const json& req) {
  for (const char* key : {"database", "schema", "transactionId", "secretArn", "resourceArn"}) {
    RETURN_IF_ERROR(CheckOptional(req, key, json::value_t::string));
  }
  return Status::Ok();
}

Result<ExecuteRequest> ReadExecute(const json& req) {
  ExecuteRequest r;
  RETURN_IF_ERROR(CheckCommonMembers(req));
  ASSIGN_OR_RETURN(r.arn, RequiredString(req, "resourceArn"));
  ASSIGN_OR_RETURN(auto secret, RequiredString(req, "secretArn"));
  ASSIGN_OR_RETURN(r.sql, CheckedSql(req));
  RETURN_IF_ERROR(CheckOptional(req, "includeResultMetadata", json::value_t::boolean));
  RETURN_IF_ERROR(CheckOptional(req, "continueAfterTimeout", json::value_t::boolean));
  RETURN_IF_ERROR(CheckOptional(req, "resultSetOptions", json::value_t::object));
  RETURN_IF_ERROR(CheckOptional(req, "formatRecordsAs", json::value_t::string));
  auto format = OptionalString(req, "formatRecordsAs").value_or("NONE");
  if (format != "NONE" && format != "JSON") {
    return BadRequest(fmt::format("formatRecordsAs must be NONE or JSON, not {}", format));
  }
  r.records_as_json = format == "JSON";
  r.include_metadata = OptionalBool(req, "includeResultMetadata");
  auto params = req.find("parameters");
  ASSIGN_OR_RETURN(r.params, Parameters(params == req.end() ? json() : *params));
  r.transaction_id = OptionalString(req, "transactionId");
  r.target = Target(req, r.arn);
  return r;
}

// Cannot fail: text that is not valid UTF-8 (SQLite stores what it is
// given) has each invalid byte replaced by U+FFFD, as the dumps below do.
json EncodeResult(const ExecuteRequest& req, const engine::StatementResult& result) {
  json out = json::object();
  if (!result.columns.empty()) {
    if (req.records_as_json) {
      json rows = json::array();
      for (const auto& row : result.rows) {
        json obj = json::object();
        for (size_t i = 0; i < row.size(); ++i) obj[result.columns[i].name] = ValueToPlain(row[i]);
        rows.push_back(std::move(obj));
      }
      out["formattedRecords"] = rows.dump(-1, ' ', false, json::error_handler_t::replace);
    } else {
      json records = json::array();
      for (const auto& row : result.rows) {
        json fields = json::array();
        for (const auto& v : row) fields.push_back(ValueToField(v));
        records.push_back(std::move(fields));
      }
      out["records"] = std::move(records);
    }
    if (req.include_metadata) {
      json meta = json::array();
      for (const auto& c : result.columns) {
        meta.push_back({{"name", c.name}, {"label", c.name}, {"type", c.type},
                        {"typeName", c.type_name}, {"nullable", c.nullable ? 1 : 0}});
      }
      out["columnMetadata"] = std::move(meta);
    }
  }
  out["numberOfRecordsUpdated"] = result.rows_updated;
  if (!result.generated_fields.empty()) {
    json gen = json::array();
    for (const auto& v : result.generated_fields) gen.push_back(ValueToField(v));
    out["generatedFields"] = std::move(gen);
  }
  return out;
}

// Set once a call has reached the database: a failure after that point must
// not be one a client retries (the statement may have committed).
thread_local bool g_statement_ran = false;

Result<json> Execute(control::ControlPlane& cp, const json& req) {
  ASSIGN_OR_RETURN(auto r, ReadExecute(req));
  g_statement_ran = true;
  ASSIGN_OR_RETURN(auto result, cp.ExecuteStatement(r.target, r.sql, r.params, r.transaction_id));
  return EncodeResult(r, result);
}

Result<json> BatchExecute(control::ControlPlane& cp, const json& req) {
  RETURN_IF_ERROR(CheckCommonMembers(req));
  ASSIGN_OR_RETURN(auto arn, RequiredString(req, "resourceArn"));
  ASSIGN_OR_RETURN(auto secret, RequiredString(req, "secretArn"));
  ASSIGN_OR_RETURN(auto sql, CheckedSql(req));
  RETURN_IF_ERROR(CheckOptional(req, "parameterSets", json::value_t::array));
  auto sets_it = req.find("parameterSets");
  json sets = sets_it == req.end() || sets_it->is_null() ? json::array() : *sets_it;
  if (sets.empty()) sets.push_back(json::array());
  // Every set is read before the first runs.
  std::vector<std::vector<engine::Parameter>> param_sets;
  for (const auto& set : sets) {
    ASSIGN_OR_RETURN(auto params, Parameters(set));
    param_sets.push_back(std::move(params));
  }
  auto tx = OptionalString(req, "transactionId");
  g_statement_ran = true;
  // Without a caller's transaction, the batch is all-or-nothing in one of our own.
  std::optional<std::string> own_tx;
  if (!tx) {
    ASSIGN_OR_RETURN(auto id, cp.BeginTransaction(Target(req, arn)));
    own_tx = id;
  }
  const std::optional<std::string>& use_tx = tx ? tx : own_tx;
  json results = json::array();
  auto run_all = [&]() -> Status {
    for (const auto& params : param_sets) {
      ASSIGN_OR_RETURN(auto r, cp.ExecuteStatement(Target(req, arn), sql, params, use_tx));
      json gen = json::array();
      for (const auto& v : r.generated_fields) gen.push_back(ValueToField(v));
      results.push_back({{"generatedFields", gen}});
    }
    return Status::Ok();
  };
  Status st = run_all();
  if (own_tx) {
    if (!st.ok()) {
      Status rolled_back = cp.RollbackTransaction(arn, *own_tx);
      if (!rolled_back.ok()) {
        return Status(st.code(), fmt::format("{} (and its rollback failed: {})", st.message(),
                                             rolled_back.message()));
      }
      return st;
    }
    RETURN_IF_ERROR(cp.CommitTransaction(arn, *own_tx));
  }
  RETURN_IF_ERROR(st);
  return json{{"updateResults", results}};
}

Result<json> Begin(control::ControlPlane& cp, const json& req) {
  ASSIGN_OR_RETURN(auto arn, RequiredString(req, "resourceArn"));
  ASSIGN_OR_RETURN(auto secret, RequiredString(req, "secretArn"));
  ASSIGN_OR_RETURN(auto id, cp.BeginTransaction(Target(req, arn)));
  return json{{"transactionId", id}};
}

Result<json> Commit(control::ControlPlane& cp, const json& req) {
  ASSIGN_OR_RETURN(auto arn, RequiredString(req, "resourceArn"));
  ASSIGN_OR_RETURN(auto secret, RequiredString(req, "secretArn"));
  ASSIGN_OR_RETURN(auto id, RequiredString(req, "transactionId"));
  g_statement_ran = true;
  RETURN_IF_ERROR(cp.CommitTransaction(arn, id));
  return json{{"transactionStatus", "Transaction Committed"}};
}

Result<json> Rollback(control::ControlPlane& cp, const json& req) {
  ASSIGN_OR_RETURN(auto arn, RequiredString(req, "resourceArn"));
  ASSIGN_OR_RETURN(auto secret, RequiredString(req, "secretArn"));
  ASSIGN_OR_RETURN(auto id, RequiredString(req, "transactionId"));
  g_statement_ran = true;
  RETURN_IF_ERROR(cp.RollbackTransaction(arn, id));
  return json{{"transactionStatus", "Rollback Complete"}};
}

using Op = Result<json> (*)(control::ControlPlane&, const json&);

Op FindOp(const std::string& path) {
  if (path == "/Execute") return Execute;
  if (path == "/BatchExecute") return BatchExecute;
  if (path == "/BeginTransaction") return Begin;
  if (path == "/CommitTransaction") return Commit;
  if (path == "/RollbackTransaction") return Rollback;
  return nullptr;
}

}  // namespace

bool RdsDataApi::OwnsPath(std::string_view path) const { return FindOp(std::string(path)) != nullptr; }

std::string RdsDataApi::ActionOf(const http::Request& req) const { return req.path.substr(1); }

void RdsDataApi::WriteError(const Status& status, const std::string& request_id, http::Response& res) const {
  SendJson(res, JsonAuthError(status), request_id);
}

Outcome RdsDataApi::Handle(const Principal& /*caller: IAM authorizes against it*/, const Call& call,
                           http::Response& res) {
  Outcome out{.action = ActionOf(call.http)};
  JsonResponse r = Run(call.http.path, call.http.body, call.request_id, out.status);
  out.http_status = r.status;
  SendJson(res, r, call.request_id);
  return out;
}

JsonResponse RdsDataApi::Run(const std::string& path, const std::string& body, const std::string& request_id,
                             Status& failure) {
  Op op = FindOp(path);
  if (!op) return JsonError(failure = Status(errors::kDataNotFound, "Unknown operation " + path));
  json req = json::parse(body.empty() ? std::string("{}") : body, nullptr, false);
  if (req.is_discarded() || !req.is_object()) {
    return JsonError(failure = BadRequest("The request body is not a JSON object"));
  }
  g_statement_ran = false;
  Result<json> result = Status(errors::kDataInternal, "not run");
  std::string text;
  try {
    result = op(*control_, req);
    if (result.ok()) text = result->dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception& e) {
    // Nothing below is meant to throw; if something does (bad_alloc), the
    // caller still gets the Data API's JSON, never the server's own page.
    result = Status(errors::kDataInternal, fmt::format("internal error: {}", e.what()));
  }
  if (result.ok()) return JsonResponse{200, std::move(text), ""};
  const Status& st = result.status();
  failure = st;  // the server logs it with its detail
  // Errors from below the Data API (catalog, engine) keep their meaning but
  // travel as the Data API's own exception types; an internal one says no
  // more than that it happened (wire/public_error.h).
  if (st.code().http_status >= 500 || IsInternal(st.code())) {
    std::string why = IsInternal(st.code()) ? InternalFailureMessage(request_id) : st.message();
    // A 5xx is retried by the SDKs: only when the statement cannot have run.
    if (g_statement_ran) {
      return JsonError(Status(errors::kDataBadRequest,
                              fmt::format("The statement may have run (and, outside a transaction, been "
                                          "committed), but the call failed: {}",
                                          why)));
    }
    return JsonError(Status(errors::kDataInternal, why));
  }
  if (st.code().aws_code.find("Exception") == std::string_view::npos) {
    return JsonError(Status(errors::kDataBadRequest, st.message()));
  }
  return JsonError(st);
}

std::unique_ptr<Service> NewRdsDataService(const ServiceContext& context) {
  return std::make_unique<RdsDataApi>(context.control);
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(n);
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(n - pad);
  return out;
}

}  // namespace strata::api
