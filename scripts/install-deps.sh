#!/usr/bin/env bash
# Installs the Debian packages crmstream builds and tests with. Idempotent:
# does nothing (and needs no root) when everything is already there.
# With package names as arguments, installs just those (scripts/kafka.sh uses
# it for Java and Maven).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  librdkafka-dev librocksdb-dev libeigen3-dev libboost-dev prometheus-cpp-dev
  catch2 libsimdjson-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libbenchmark-dev
  kcat clang-14 libclang-rt-14-dev clang-format
  prometheus chromium
)
[ $# -gt 0 ] && packages=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (the dashboard's bundle, the schema and browser tests): a
# Node.js that ships its own npm (e.g. a nodesource build) conflicts with
# Debian's npm package, so judge by the commands, not the package names.
if [ $# -eq 0 ] && { ! command -v node > /dev/null || ! command -v npm > /dev/null; }; then
  missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
