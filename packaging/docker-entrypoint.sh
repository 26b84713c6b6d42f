#!/bin/sh
# Container start: initialise once from the environment, then run the server in the foreground.
#   ADDR  public IP address or domain name (required on first start); a domain turns on ACME
#   PASS  password to create queues (default: anyone may create queues)
#   TOR   set to 1 to also serve the relay as an onion service
set -eu
if [ ! -f "$SMP_SERVER_CFG_PATH/smp-server.ini" ]; then
  [ -n "${ADDR:-}" ] || { echo "Set ADDR to the server's public IP address or domain name." >&2; exit 1; }
  set -- init -y
  case "$ADDR" in
    *[!0-9.:]*) set -- "$@" --fqdn "$ADDR" ;;
    *) set -- "$@" --ip "$ADDR" ;;
  esac
  if [ -n "${PASS:-}" ]; then set -- "$@" --password "$PASS"; else set -- "$@" --no-password; fi
  [ "${TOR:-}" != 1 ] || set -- "$@" --tor
  smp-server "$@"
fi
exec smp-server start
