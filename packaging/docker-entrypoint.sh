#!/bin/sh
# Container start: initialise once from the environment, then run the server in the foreground.
# The variables of the reference's image (scripts/docker/entrypoint-smp-server), and ours:
#   ADDR        public IP address or domain name (required on first start). A domain also sets
#               --own-domains to its base domain, as the reference does, and turns on ACME
#               unless WEB_MANUAL is set or Caddy's certificate is mounted at /certificates.
#   PASS        password to create queues (empty: anyone may create queues)
#   WEB_MANUAL  set (e.g. 1): no web server here, SMP on 5223 only (the guide's "manual" compose)
#   TOR         1: also serve the relay as an onion service (embedded Tor)
#   ACME_EMAIL  contact address for the ACME account (expiry notices)
# Volumes: /etc/opt/simplex (configuration, keys) and /var/opt/simplex (state, backups); the
# guide's root-owned bind mounts are handed to the smp user before the server starts as that
# user. Stop with SIGINT (the image's STOPSIGNAL): the server saves its state and writes dated
# backups to /var/opt/simplex/backups.
set -eu
confd="${SMP_SERVER_CFG_PATH:-/etc/opt/simplex}"
logd="${SMP_SERVER_LOG_PATH:-/var/opt/simplex}"
cert_path="${SMP_CERT_PATH:-/certificates}"
export SMP_SERVER_CFG_PATH="$confd" SMP_SERVER_LOG_PATH="$logd"

# Root (the default): own the volumes, then run as smp. Another user: run as that user.
run_user() {
  if [ "$(id -u)" = 0 ] && id smp >/dev/null 2>&1; then
    setpriv --reuid=smp --regid=smp --init-groups "$@"
  else
    "$@"
  fi
}
if [ "$(id -u)" = 0 ] && id smp >/dev/null 2>&1; then
  mkdir -p "$confd" "$logd"
  chown -R smp:smp "$confd" "$logd"
fi

if [ ! -f "$confd/smp-server.ini" ]; then
  case "${ADDR:-}" in
    '') echo "Set ADDR to the server's public IP address or domain name (e.g. -e ADDR=smp.example.com)." >&2; exit 1 ;;
    *[a-zA-Z]*)
      case "$ADDR" in
        *:*) set -- --ip "$ADDR" ;;                      # IPv6
        *.*) base="$(printf '%s' "$ADDR" | awk -F. '{print $(NF-1)"."$NF}')"
             set -- --fqdn "$ADDR" --own-domains="$base" ;;
        *) echo "ADDR '$ADDR' is not a domain name such as smp1.example.org or an IP address." >&2; exit 1 ;;
      esac ;;
    *) set -- --ip "$ADDR" ;;
  esac
  if [ -n "${PASS:-}" ]; then set -- "$@" --password "$PASS"; else set -- "$@" --no-password; fi
  [ "${TOR:-}" != 1 ] || set -- "$@" --tor
  [ -z "${ACME_EMAIL:-}" ] || set -- "$@" --acme-email "$ACME_EMAIL"
  caddy_cert=""
  if [ -z "${WEB_MANUAL:-}" ] && [ -f "$cert_path/$ADDR.crt" ]; then caddy_cert=1; fi
  # One certificate client: none with WEB_MANUAL, Caddy's when mounted, else ours.
  if [ -n "${WEB_MANUAL:-}" ] || [ -n "$caddy_cert" ]; then set -- "$@" --no-acme; fi
  run_user smp-server init --yes --store-log --daily-stats --source-code "$@"
  ini="$confd/smp-server.ini"
  if [ -n "${WEB_MANUAL:-}" ]; then
    sed -i -e 's|^[^#]*https = |#&|' -e 's|^[^#]*cert = |#&|' -e 's|^[^#]*key = |#&|' \
      -e 's|^port = .*|port = 5223|' "$ini"
  elif [ -n "$caddy_cert" ]; then
    sed -i -e "s|^cert = .*|cert = $cert_path/$ADDR.crt|" -e "s|^key = .*|key = $cert_path/$ADDR.key|" "$ini"
  fi
fi

# `exec`: the server is the container's main process and gets its stop signal.
if [ "$(id -u)" = 0 ] && id smp >/dev/null 2>&1; then
  exec setpriv --reuid=smp --regid=smp --init-groups smp-server start
fi
exec smp-server start
