#!/usr/bin/env bash
# Installs what fuzz/run.sh needs: a C++ compiler for libfuzzer-sys, which builds libFuzzer
# from its bundled source (the fuzz targets then run on the stable toolchain, no sanitizer).
# Idempotent; run as root.
set -euo pipefail
if command -v c++ >/dev/null 2>&1; then
    echo "fuzz: C++ compiler present: $(c++ --version | head -n1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends g++
c++ --version | head -n1
