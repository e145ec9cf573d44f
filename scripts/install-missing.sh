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
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "missing: ${need[*]}; install them as root (apt-get install ${need[*]}): not root, and no sudo here" >&2
    exit 1
  fi
  sudo=sudo
fi
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
