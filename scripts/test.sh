#!/usr/bin/env bash
# The project's test command: install what the tests need, then run `cargo test --workspace`.
#
#   scripts/test.sh            install what is missing (needs root), then run every test
#   scripts/test.sh --check    only report what is missing and how to install it (exit 1 if so)
#   scripts/test.sh --install  only install (as root), run nothing
#
# Installed: the tools of .ci/setup-*.sh (openssl, pebble, chromium, curl, systemd-analyze,
# zipsign, tor) and a Python venv with tests/py/requirements.txt (SMP_CI_VENV, default
# /var/tmp/smp-server-ci-venv). Everything is idempotent: a second run installs nothing.
# The tests then run with SMP_TEST_REQUIRE_ALL=1 (a missing tool is a failure, never a skip)
# and SMP_TEST_TOR_NETWORK=1 (the slow private Tor network suite) and SMP_TEST_AUTH_TIMING=1
# (tests/auth_timing.rs, a few minutes of timed requests) and SMP_TEST_REPRODUCIBLE=1
# (tests/dist_reproducible.rs, two clones built byte-identical, ~4 minutes), then the relay scenarios
# again on PostgreSQL (SMP_TEST_STORE=database, then database-journal); extra arguments go to `cargo test` (and skip
# the PostgreSQL re-run). Without this script, plain `cargo test --workspace` also passes: suites whose
# tools are missing print `skipped: <suite>: <why>`.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  --check) mode=check; shift ;;
  --install) mode=install; shift ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
esac

VENV="${SMP_CI_VENV:-/var/tmp/smp-server-ci-venv}"

# What is missing, one line each: "<what>: <how to install>".
missing() {
  local t
  for t in openssl curl python3 pebble pebble-challtestsrv chromium systemd-analyze tor tor-gencert zipsign podman runc cargo; do
    command -v "$t" >/dev/null 2>&1 && continue
    case "$t" in
      pebble|pebble-challtestsrv|chromium|curl) echo "$t: .ci/setup-acme.sh (apt-get install pebble chromium curl)" ;;
      systemd-analyze|zipsign) echo "$t: .ci/setup-dist.sh (apt-get install systemd; cargo install --locked zipsign --version 0.2.0)" ;;
      tor|tor-gencert) echo "$t: .ci/setup-tor.sh (apt-get install tor)" ;;
      podman|runc) echo "$t: .ci/setup-container.sh (apt-get install podman runc mmdebstrap)" ;;
      cargo) echo "cargo: install Rust (the version in rust-toolchain.toml)" ;;
      *) echo "$t: apt-get install $t" ;;
    esac
  done
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import nacl, cryptography, OpenSSL, prometheus_client' 2>/dev/null; then
    echo "python packages in $VENV: python3 -m venv $VENV && $VENV/bin/pip install -r tests/py/requirements.txt"
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "root: tests/persistence_disk.rs mounts tmpfs and switches users; run as root"
  fi
}

install() {
  [ "$(id -u)" -eq 0 ] || {
    echo "scripts/test.sh: installing needs root. Missing:" >&2
    missing | sed 's/^/  /' >&2
    echo "Run it as root (sudo scripts/test.sh), or install the above yourself; plain" >&2
    echo "'cargo test --workspace' skips what is missing and says so." >&2
    exit 1
  }
  if ! command -v openssl >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl python3 python3-venv
  fi
  local setup
  for setup in .ci/setup-*.sh; do
    [ -f "$setup" ] && bash "$setup"
  done
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/py/requirements.txt
}

case "$mode" in
  check)
    m="$(missing)"
    if [ -n "$m" ]; then
      echo "Missing for the full test suite (scripts/test.sh as root installs it):"
      printf '%s\n' "$m" | sed 's/^/  /'
      exit 1
    fi
    echo "Everything the tests need is installed."
    exit 0 ;;
  install)
    install
    exit 0 ;;
esac

m="$(missing | grep -v '^root:' || true)"
[ -z "$m" ] || install
m="$(missing)"
if [ -n "$m" ]; then
  echo "scripts/test.sh: still missing after installing:" >&2
  printf '%s\n' "$m" | sed 's/^/  /' >&2
  exit 1
fi
export SMP_TEST_PYTHON="$VENV/bin/python"
export SMP_TEST_REQUIRE_ALL=1
export SMP_TEST_TOR_NETWORK="${SMP_TEST_TOR_NETWORK:-1}"
export SMP_TEST_AUTH_TIMING="${SMP_TEST_AUTH_TIMING:-1}"
export SMP_TEST_REPRODUCIBLE="${SMP_TEST_REPRODUCIBLE:-1}"
cargo test --workspace "$@"
# The relay core's scenarios again on the PostgreSQL stores (a throwaway cluster per test
# process, .ci/setup-postgres.sh); only for the full run, not when given a selection.
if [ $# -eq 0 ]; then
  SMP_TEST_STORE=database cargo test --test server_queues --test server_links \
    --test server_notifications --test server_subscriptions --test server_proxy \
    --test server_relay --test server_malformed --test server_syntax --test server_identity \
    --test service_subscriptions --test service_restart
  # and on queues in PostgreSQL with messages in the journal (store_messages = journal)
  SMP_TEST_STORE=database-journal cargo test --test server_queues --test server_links \
    --test server_notifications --test server_subscriptions --test server_proxy \
    --test server_relay --test server_malformed --test server_syntax --test service_subscriptions
fi
