#include "api/rds/rds_parameters.h"

#include <fmt/format.h>

namespace strata::api {
namespace {

using enum Treatment;

constexpr std::string_view kNoVpc =
    "Strata has no VPCs: the API listens where --listen says and each PostgreSQL server on loopback";

constexpr UnactedParameter kTable[] = {
    // Security and durability claims Strata cannot make true: refused unless false.
    {"*", "StorageEncrypted", kOnlyTruth, "false",
     "Strata does not encrypt an instance's own files; start stratad with --repo-key-file to encrypt its backups"},
    {"*", "KmsKeyId", kRefused, "", "Strata encrypts its repository with its own keys (--repo-key-file)"},
    {"*", "MultiAZ", kOnlyTruth, "false", "Strata runs one copy of each instance, on this host"},
    {"*", "EnableIAMDatabaseAuthentication", kOnlyTruth, "false",
     "database users log in with passwords; IAM database authentication is not supported"},
    {"*", "PubliclyAccessible", kOnlyTruth, "false", kNoVpc},
    {"*", "VpcSecurityGroupIds", kRefused, "", kNoVpc},
    {"*", "DBSecurityGroups", kRefused, "", kNoVpc},
    {"*", "DBSubnetGroupName", kRefused, "", kNoVpc},
    {"*", "NetworkType", kOnlyTruth, "IPV4", kNoVpc},
    {"*", "AvailabilityZone", kRefused, "", "Strata has no availability zones; every instance runs on this host"},
    {"*", "EnableCustomerOwnedIp", kOnlyTruth, "false", kNoVpc},
    {"*", "BackupTarget", kOnlyTruth, "region", "backups go to stratad's repository"},
    {"*", "Domain", kRefused, "", "Strata has no directory domains"},
    {"*", "DomainIAMRoleName", kRefused, "", "Strata has no directory domains"},
    // Monitoring and logs Strata does not provide.
    {"*", "MonitoringInterval", kOnlyTruth, "0", "Enhanced Monitoring is not supported"},
    {"*", "MonitoringRoleArn", kRefused, "", "Enhanced Monitoring is not supported"},
    {"*", "EnablePerformanceInsights", kOnlyTruth, "false", "Performance Insights is not supported"},
    {"*", "PerformanceInsightsKMSKeyId", kRefused, "", "Performance Insights is not supported"},
    {"*", "PerformanceInsightsRetentionPeriod", kRefused, "", "Performance Insights is not supported"},
    {"*", "EnableCloudwatchLogsExports", kRefused, "", "log exports to CloudWatch Logs are not supported"},
    {"*", "CloudwatchLogsExportConfiguration", kRefused, "", "log exports to CloudWatch Logs are not supported"},
    // Storage and engine settings Strata cannot honour.
    {"*", "MaxAllocatedStorage", kRefused, "",
     "Strata does not cap an instance's storage, so storage autoscaling has nothing to raise"},
    {"*", "LicenseModel", kOnlyTruth, "postgresql-license",
     "the only license model among Strata's engines (SQLite is in the public domain)"},
    {"*", "DBParameterGroupName", kDefaultOnly, "default.",
     "instances run with their engine's default parameters; custom parameter groups do not exist"},
    {"*", "OptionGroupName", kDefaultOnly, "default:",
     "instances run with their engine's default options; custom option groups do not exist"},
    {"*", "CharacterSetName", kRefused, "", "an Oracle setting"},
    {"*", "NcharCharacterSetName", kRefused, "", "an Oracle setting"},
    {"*", "Timezone", kRefused, "", "a SQL Server setting"},
    {"*", "TdeCredentialArn", kRefused, "", "an Oracle and SQL Server setting"},
    {"*", "TdeCredentialPassword", kRefused, "", "an Oracle and SQL Server setting"},
    {"*", "DBClusterIdentifier", kRefused, "", "Strata has no DB clusters"},
    {"*", "PromotionTier", kRefused, "", "Strata has no DB clusters"},
    {"*", "ProcessorFeatures", kRefused, "", "instance classes are labels; Strata does not size CPUs"},
    {"*", "UseDefaultProcessorFeatures", kOnlyTruth, "true", "instance classes are labels; Strata does not size CPUs"},
    {"*", "CustomIamInstanceProfile", kRefused, "", "an RDS Custom setting"},
    {"*", "AutomationMode", kRefused, "", "an RDS Custom setting"},
    {"*", "ResumeFullAutomationModeMinutes", kRefused, "", "an RDS Custom setting"},
    {"ModifyDBInstance", "EngineVersion", kRefused, "",
     "the engine's version is the host's Debian package; upgrades are not done through the API"},
    {"ModifyDBInstance", "AllowMajorVersionUpgrade", kRefused, "",
     "the engine's version is the host's Debian package; upgrades are not done through the API"},
    {"ModifyDBInstance", "DBPortNumber", kRefused, "", "an instance keeps the port it was created with"},
    {"ModifyDBInstance", "CACertificateIdentifier", kRefused, "", "PostgreSQL servers listen on loopback without TLS"},
    {"ModifyDBInstance", "CertificateRotationRestart", kRefused, "", "PostgreSQL servers listen on loopback without TLS"},
    {"ModifyDBInstance", "ReplicaMode", kRefused, "", "Strata has no read replicas"},
    {"ModifyDBInstance", "AwsBackupRecoveryPointArn", kRefused, "", "AWS Backup is not served yet"},
    {"CopyDBSnapshot", "PreSignedUrl", kRefused, "", "there is one region; cross-region copies do not exist"},
    {"CopyDBSnapshot", "TargetCustomAvailabilityZone", kRefused, "", "an RDS Custom setting"},
    // Accepted and without effect, for the reason given.
    {"*", "AutoMinorVersionUpgrade", kNoOp, "",
     "minor versions are the host's Debian packages, upgraded with the host"},
    {"*", "StorageType", kNoOp, "", "an instance's files are on stratad's data disk, reported as StorageType local"},
    {"*", "Iops", kNoOp, "", "an instance gets what the data disk gives; nothing is provisioned"},
    {"*", "StorageThroughput", kNoOp, "", "an instance gets what the data disk gives; nothing is provisioned"},
};

constexpr ErrorCode kDBParameterGroupNotFound{"DBParameterGroupNotFound", 404};
constexpr ErrorCode kOptionGroupNotFound{"OptionGroupNotFoundFault", 404};

}  // namespace

std::span<const UnactedParameter> UnactedParameters() { return kTable; }

Status CheckUnactedParameters(std::string_view action, const QueryParams& params) {
  for (const auto& u : kTable) {
    if (u.treatment == kNoOp || (u.action != "*" && u.action != action)) continue;
    auto value = params.Get(u.name);
    if (!value) {
      // A list or structure travels as "Name.Member.N": present, but without one value.
      auto next = params.all().lower_bound(fmt::format("{}.", u.name));
      bool nested = next != params.all().end() && next->first.rfind(fmt::format("{}.", u.name), 0) == 0;
      if (!nested) continue;
      value = "";
      if (u.treatment != kRefused) {
        return Status(errors::kInvalidParameterValue, fmt::format("{} takes a single value", u.name));
      }
    }
    switch (u.treatment) {
      case kRefused:
        return Status(errors::kInvalidParameterCombination,
                      fmt::format("{} is not supported: {}.", u.name, u.reason));
      case kOnlyTruth:
        if (*value == u.truth) break;
        return Status(errors::kInvalidParameterCombination,
                      fmt::format("{}={} is not supported ({} is the only value): {}.", u.name, *value, u.truth,
                                  u.reason));
      case kDefaultOnly:
        if (value->rfind(u.truth, 0) == 0) break;
        return Status(u.name == "OptionGroupName" ? kOptionGroupNotFound : kDBParameterGroupNotFound,
                      fmt::format("{} {} not found: {}.", u.name, *value, u.reason));
      case kNoOp:
        break;
    }
  }
  return Status::Ok();
}

}  // namespace strata::api
