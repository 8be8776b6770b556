// The one error catalog. Each entry is the code a client sees on the wire and
// the HTTP status it travels with; api/ turns a Status into the XML or JSON
// error envelope in exactly one place per protocol. Use the code the botocore
// model names (not the shape name: DBSnapshotNotFound, not ...Fault).
#pragma once

#include <string_view>

namespace strata {

struct ErrorCode {
  std::string_view aws_code;
  int http_status;
};

namespace errors {

inline constexpr ErrorCode kOk{"OK", 200};

// Common to every Query API (RDS CommonErrors page).
inline constexpr ErrorCode kInvalidAction{"InvalidAction", 400};
inline constexpr ErrorCode kMissingAction{"MissingAction", 400};
inline constexpr ErrorCode kMissingParameter{"MissingParameter", 400};
inline constexpr ErrorCode kInvalidParameterValue{"InvalidParameterValue", 400};
inline constexpr ErrorCode kInvalidParameterCombination{"InvalidParameterCombination", 400};
inline constexpr ErrorCode kInvalidQueryParameter{"InvalidQueryParameter", 400};
inline constexpr ErrorCode kMalformedQueryString{"MalformedQueryString", 404};
inline constexpr ErrorCode kValidationError{"ValidationError", 400};
inline constexpr ErrorCode kRequestEntityTooLarge{"RequestEntityTooLarge", 413};
inline constexpr ErrorCode kInternalFailure{"InternalFailure", 500};
inline constexpr ErrorCode kServiceUnavailable{"ServiceUnavailable", 503};

// Authentication (SigV4).
inline constexpr ErrorCode kMissingAuthenticationToken{"MissingAuthenticationToken", 403};
inline constexpr ErrorCode kIncompleteSignature{"IncompleteSignature", 400};
inline constexpr ErrorCode kInvalidClientTokenId{"InvalidClientTokenId", 403};
inline constexpr ErrorCode kSignatureDoesNotMatch{"SignatureDoesNotMatch", 403};
inline constexpr ErrorCode kRequestExpired{"RequestExpired", 400};
inline constexpr ErrorCode kAccessDenied{"AccessDenied", 403};

// RDS instances.
inline constexpr ErrorCode kDBInstanceNotFound{"DBInstanceNotFound", 404};
inline constexpr ErrorCode kDBInstanceAlreadyExists{"DBInstanceAlreadyExists", 400};
inline constexpr ErrorCode kInvalidDBInstanceState{"InvalidDBInstanceState", 400};
inline constexpr ErrorCode kInstanceQuotaExceeded{"InstanceQuotaExceeded", 400};
inline constexpr ErrorCode kStorageQuotaExceeded{"StorageQuotaExceeded", 400};

// RDS snapshots, restores and automated backups.
inline constexpr ErrorCode kDBSnapshotNotFound{"DBSnapshotNotFound", 404};
inline constexpr ErrorCode kDBSnapshotAlreadyExists{"DBSnapshotAlreadyExists", 400};
inline constexpr ErrorCode kInvalidDBSnapshotState{"InvalidDBSnapshotState", 400};
inline constexpr ErrorCode kSnapshotQuotaExceeded{"SnapshotQuotaExceeded", 400};
inline constexpr ErrorCode kPointInTimeRestoreNotEnabled{"PointInTimeRestoreNotEnabled", 400};
inline constexpr ErrorCode kInvalidRestoreFault{"InvalidRestoreFault", 400};
inline constexpr ErrorCode kDBInstanceAutomatedBackupNotFound{"DBInstanceAutomatedBackupNotFound", 404};
inline constexpr ErrorCode kInvalidDBInstanceAutomatedBackupState{
    "InvalidDBInstanceAutomatedBackupState", 400};

// RDS Data API (rest-json; the code travels in x-amzn-ErrorType).
inline constexpr ErrorCode kDataBadRequest{"BadRequestException", 400};
inline constexpr ErrorCode kDataNotFound{"NotFoundException", 404};
inline constexpr ErrorCode kDataForbidden{"ForbiddenException", 403};
inline constexpr ErrorCode kDataStatementTimeout{"StatementTimeoutException", 400};
inline constexpr ErrorCode kDataInternal{"InternalServerErrorException", 500};

// Refusals by the HTTP layer itself (api/http_server), before a request
// reaches an API. Throttling (Query APIs) and ThrottlingException (rest-json)
// are codes botocore's retry handlers treat as throttling: the SDKs back off
// and retry. The Data API answers the others as its BadRequestException, with
// the HTTP status that says why.
inline constexpr ErrorCode kThrottling{"Throttling", 400};
inline constexpr ErrorCode kMalformedHttpRequest{"BadRequest", 400};
inline constexpr ErrorCode kRequestTimeout{"RequestTimeout", 408};
inline constexpr ErrorCode kRequestURITooLong{"RequestURITooLong", 414};
inline constexpr ErrorCode kRequestHeaderFieldsTooLarge{"RequestHeaderFieldsTooLarge", 431};
inline constexpr ErrorCode kDataThrottling{"ThrottlingException", 429};
inline constexpr ErrorCode kDataMalformedHttpRequest{"BadRequestException", 400};
inline constexpr ErrorCode kDataRequestTimeout{"BadRequestException", 408};
inline constexpr ErrorCode kDataRequestTooLarge{"BadRequestException", 413};
inline constexpr ErrorCode kDataURITooLong{"BadRequestException", 414};
inline constexpr ErrorCode kDataHeaderFieldsTooLarge{"BadRequestException", 431};

// Below the API: the repository and its byte stores. The API maps them to
// InternalFailure unless a caller gives them a more specific meaning.
inline constexpr ErrorCode kObjectNotFound{"ObjectNotFound", 404};
inline constexpr ErrorCode kIoError{"IOError", 500};
inline constexpr ErrorCode kNoSpace{"NoSpace", 507};
// A server could not listen on its port: another process holds it.
inline constexpr ErrorCode kPortInUse{"PortInUse", 500};
inline constexpr ErrorCode kCorruption{"Corruption", 500};
inline constexpr ErrorCode kKeyError{"KeyError", 500};
// An encrypted repository whose key is not given, or not the one it was
// encrypted with: RDS's code for a KMS key it cannot use.
inline constexpr ErrorCode kKMSKeyNotAccessible{"KMSKeyNotAccessibleFault", 400};

}  // namespace errors
}  // namespace strata
