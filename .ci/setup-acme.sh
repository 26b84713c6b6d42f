#!/usr/bin/env bash
# Tools for the web/ACME tests (tests/web_acme.rs): Debian's pebble ACME test CA and its DNS
# helper pebble-challtestsrv, openssl (throwaway CA for pebble's own HTTPS), curl, and
# chromium (headless screenshot of the information page). Idempotent; runs as root.
set -euo pipefail
need=()
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v pebble-challtestsrv >/dev/null 2>&1 || need+=(pebble)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
