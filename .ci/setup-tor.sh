#!/usr/bin/env bash
# Installs what the private-Tor-network tests need (Debian's tor: tor + tor-gencert).
# Idempotent; run as root. Then run the tests with SMP_TEST_TOR_NETWORK=1.
set -euo pipefail
if command -v tor >/dev/null 2>&1 && command -v tor-gencert >/dev/null 2>&1; then
    echo "tor already installed: $(tor --version | head -n1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends tor
# The package enables a system tor service; the tests start their own tor processes only.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now tor >/dev/null 2>&1 || true
fi
tor --version | head -n1
command -v tor-gencert >/dev/null
