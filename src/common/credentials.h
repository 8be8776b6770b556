// AWS shared-credentials files (INI: [profile] with aws_access_key_id,
// aws_secret_access_key, aws_session_token), as the aws CLI and boto3 read
// them. stratad writes its root credentials in this format; the strata CLI
// and the S3 driver read it.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "common/sigv4.h"
#include "common/status.h"

namespace strata {

using CredentialsFile = std::map<std::string, sigv4::Credentials>;  // by profile name

Result<CredentialsFile> LoadCredentialsFile(const std::filesystem::path& path);

// Writes a new [default] profile with a fresh key pair, mode 0600, atomically
// (temp file, fsync, rename). Fails if the file exists.
Result<sigv4::Credentials> CreateRootCredentials(const std::filesystem::path& path);

// The usual AWS chain for a client: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
// (+AWS_SESSION_TOKEN) from the environment, else the profile (AWS_PROFILE or
// "default") of `fallback_file` if given, else AWS_SHARED_CREDENTIALS_FILE or
// ~/.aws/credentials.
std::optional<sigv4::Credentials> ResolveClientCredentials(
    const std::optional<std::filesystem::path>& fallback_file);

}  // namespace strata
