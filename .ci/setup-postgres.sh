#!/usr/bin/env bash
# Installs what the PostgreSQL store tests need: Debian's postgresql (server binaries, psql,
# pgcrypto from contrib). Idempotent; run as root. The tests make their own throwaway cluster
# (initdb into a temporary directory, as the postgres user, Unix socket only), so the system
# cluster the package creates is not used.
set -euo pipefail
have() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 \
    && ls /usr/share/postgresql/*/extension/pgcrypto.control >/dev/null 2>&1; }
if have; then
    echo "postgresql already installed: $(ls -d /usr/lib/postgresql/*/ | head -n1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends postgresql postgresql-contrib
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
have
id postgres >/dev/null
