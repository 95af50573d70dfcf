#!/usr/bin/env bash
# Installs the servers the comparative benchmark (`npm run bench`) measures Sluice against:
# PostgreSQL and Redis from Debian's packages. The bench calls this when a binary is missing;
# it can also be run by hand:
#
#   sudo bash tools/scripts/bench-setup.sh                  # both
#   sudo bash tools/scripts/bench-setup.sh redis-server     # only the named packages
#
# Needs root (apt-get). The packages' own services are not started (policy-rc.d says no
# while installing): the bench starts its own server on a free loopback port with its data
# in a temporary folder, and stops only that one.
set -euo pipefail

packages=("$@")
if [ "${#packages[@]}" -eq 0 ]; then packages=(postgresql redis-server); fi
for p in "${packages[@]}"; do
  case "$p" in
    postgresql|redis-server) ;;
    *) echo "[sluice/bench-setup] unknown package \"$p\": expected postgresql or redis-server" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo -n bash "$0" "${packages[@]}"; fi
  echo "[sluice/bench-setup] apt-get needs root: run \"sudo bash $0 ${packages[*]}\" once, then the bench again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[sluice/bench-setup] apt-get not found: install ${packages[*]} with this system's package manager" >&2
  exit 1
fi

# Keep the packages' post-install scripts from starting system-wide services (port 5432,
# 6379) that the bench did not ask for. Only a policy file this script created is removed.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "[sluice/bench-setup] installing ${packages[*]} (apt-get)" >&2
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
echo "[sluice/bench-setup] installed ${packages[*]}" >&2
