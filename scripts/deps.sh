# Installs, with apt-get, the Debian 12 packages Strata needs that are missing.
# Sourced by scripts/run and scripts/test. Usage: install_deps build|test
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libsqlite3-dev libssl-dev libzstd-dev libcurl4-openssl-dev
  nlohmann-json3-dev libpugixml-dev libfmt-dev libcli11-dev libboost-dev libpq-dev
  libgtest-dev libgmock-dev
  # The postgres engine runs Debian's PostgreSQL server programs.
  postgresql-15 postgresql-client-15
  # The server module every cluster preloads (src/engine/postgres/pg_guard) builds against its headers.
  postgresql-server-dev-15
  # Lets the master user add the extensions RDS lets it add (src/engine/postgres/postgres_engine.cc).
  postgresql-15-pgextwlist
)
TEST_PACKAGES=(
  awscli python3-boto3 python3-botocore sqlite3 zstd
  # test_security_disk: a loop-mounted ext4 with 1 KiB blocks (mkfs.ext4, mount).
  e2fsprogs mount
)

install_deps() {
  local want=("${BUILD_PACKAGES[@]}")
  if [ "${1:-build}" = test ]; then want+=("${TEST_PACKAGES[@]}"); fi
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
