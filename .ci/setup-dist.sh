#!/usr/bin/env bash
# Tools for the distribution tests (tests/dist_*.rs): the zipsign CLI that signs release archives
# and checks them independently of our updater, systemd-analyze to verify the unit file, and
# openssl for install.sh's signature check. Idempotent; runs as root on a fresh Debian.
set -euo pipefail
need_apt=()
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ "${#need_apt[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
ZIPSIGN_VERSION=0.2.0
if ! command -v zipsign >/dev/null 2>&1 || ! zipsign --version 2>/dev/null | grep -q "$ZIPSIGN_VERSION"; then
  # Its own target dir, so the project's build cache is not disturbed.
  CARGO_TARGET_DIR=/var/tmp/zipsign-build cargo install --locked --quiet zipsign --version "$ZIPSIGN_VERSION"
fi
zipsign --version
