#!/usr/bin/env bash
# Installs, with apt, the Debian packages whose commands are missing.
#
#   scripts/install-missing.sh COMMAND[:PACKAGE]...
#
# e.g. `docker-registry jq nginx:nginx-light`. A command counts as present when it is on
# PATH or in /usr/sbin (nginx lives there, which is not on every user's PATH).
set -euo pipefail
need=()
for spec in "$@"; do
  cmd=${spec%%:*}
  pkg=${spec#*:}
  command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
[ ${#need[@]} -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
