#!/bin/sh
# One-command install of smp-server on a Debian/Ubuntu (or any systemd) server, as root:
#
#   curl -fsSL <url of this file> | sh -s -- [options]
#
# Downloads the newest release, checks its signature with the release keys embedded below,
# creates the `smp` user and /etc/opt/simplex, /var/opt/simplex, installs the binary and a
# hardened systemd unit, runs `smp-server init` non-interactively, opens the firewall, starts the
# service and prints the server address. Running it again upgrades the binary and keeps the
# configuration. See docs/install.md.
#
# Options (or the environment variable in brackets):
#   --fqdn NAME          public domain name; turns on ACME certificates        [SMP_FQDN]
#   --ip ADDRESS         public IP address (default: detected)                  [SMP_IP]
#   --tor                also serve the relay as an onion service               [SMP_TOR=1]
#   --password PASS      password to create queues (default: a random one)     [SMP_PASSWORD]
#   --no-password        anyone may create queues                              [SMP_NO_PASSWORD=1]
#   --port PORTS         SMP ports (default 5223,443)                          [SMP_PORTS]
#   --update-mode MODE   [UPDATE] mode: off, check (default) or auto           [SMP_UPDATE_MODE]
#   --version TAG        install this release (e.g. v1.2.3), not the newest   [VER, as the
#                        reference's update script; default latest]
#   --repo OWNER/NAME    release repository                                    [SMP_REPOSITORY]
#   --api-url URL        GitHub-compatible API (default https://api.github.com)[SMP_API_URL]
#   --root DIR           install into DIR instead of / (no user, systemctl or  [SMP_INSTALL_ROOT]
#                        firewall changes; for tests and image builds)
#   --uninstall          remove the service and binary, keep the server identity
#   --purge              with --uninstall: also delete configuration, keys, data and the user
set -eu

# Release signing keys (base64 of raw ed25519 public keys, as in updater/release-keys.txt).
# Two keys during a rotation. The installer refuses a release signed by neither.
RELEASE_KEYS="
"

REPO="${SMP_REPOSITORY:-}"
API_URL="${SMP_API_URL:-https://api.github.com}"
ROOT="${SMP_INSTALL_ROOT:-}"
FQDN="${SMP_FQDN:-}"
IP="${SMP_IP:-}"
TOR="${SMP_TOR:-}"
PASSWORD="${SMP_PASSWORD:-}"
NO_PASSWORD="${SMP_NO_PASSWORD:-}"
PORTS="${SMP_PORTS:-}"
UPDATE_MODE="${SMP_UPDATE_MODE:-check}"
VER="${VER:-latest}"
ACTION=install
PURGE=
RESTART_STATUS=42

say() { printf '%s\n' "smp-install: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The unit's start guard (ExecStartPre): after a self-update, a new binary that failed to start
# (it never confirmed by answering a handshake on its port, which removes the marker) is
# replaced by the previous one before the next start.
guard_text() {
  cat <<'GUARD'
#!/bin/sh
# smp-update-guard BINARY: roll back an update whose binary did not start (see install.sh).
set -u
bin="$1"
marker="$bin.update-pending"
[ -f "$marker" ] || exit 0
tries="$(head -n 1 "$marker" 2>/dev/null || echo 0)"
case "$tries" in ''|*[!0-9]*) tries=0 ;; esac
if [ "$tries" -ge 1 ] && [ -f "$bin.previous" ]; then
  cp -p "$bin" "$bin.failed" 2>/dev/null || true
  cp -p "$bin.previous" "$bin.rollback" && mv -f "$bin.rollback" "$bin" || { echo "smp-update-guard: cannot restore $bin.previous" >&2; exit 0; }
  rm -f "$marker"
  echo "smp-update-guard: the updated binary did not start; rolled back to the previous one (kept the failed one as $bin.failed)" >&2
  exit 0
fi
{ echo $((tries + 1)); sed -n '2,$p' "$marker"; } > "$marker.tmp" && mv -f "$marker.tmp" "$marker"
exit 0
GUARD
}

while [ $# -gt 0 ]; do
  case "$1" in
    --print-update-guard) guard_text; exit 0 ;;
    --fqdn) FQDN="${2:?--fqdn needs a domain name}"; shift 2 ;;
    --ip) IP="${2:?--ip needs an address}"; shift 2 ;;
    --tor) TOR=1; shift ;;
    --password) PASSWORD="${2:?--password needs a value}"; shift 2 ;;
    --no-password) NO_PASSWORD=1; shift ;;
    --port) PORTS="${2:?--port needs e.g. 5223,443}"; shift 2 ;;
    --update-mode) UPDATE_MODE="${2:?--update-mode needs off, check or auto}"; shift 2 ;;
    --version) VER="${2:?--version needs a tag, e.g. v1.2.3}"; shift 2 ;;
    --repo) REPO="${2:?--repo needs owner/name}"; shift 2 ;;
    --api-url) API_URL="${2:?--api-url needs a URL}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --uninstall) ACTION=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
case "$UPDATE_MODE" in off|check|auto) ;; *) die "--update-mode must be off, check or auto" ;; esac
[ -z "$PURGE" ] || [ "$ACTION" = uninstall ] || die "--purge is only valid with --uninstall"
API_URL="${API_URL%/}"
ROOT="${ROOT%/}"

CFG_DIR=/etc/opt/simplex
LOG_DIR=/var/opt/simplex
BIN_DIR=/opt/simplex/bin
UNIT=/etc/systemd/system/smp-server.service
LINK=/usr/local/bin/smp-server

# In --root mode nothing outside ROOT is touched and the current user runs the server.
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  SYSTEM=
else
  [ "$(id -u)" -eq 0 ] || die "run as root (e.g. sudo sh install.sh ...)"
  SYSTEM=1
fi

as_smp() {
  if [ -n "$SYSTEM" ]; then
    if command -v runuser >/dev/null 2>&1; then runuser -u smp -- "$@"; else su -s /bin/sh smp -c "$*"; fi
  else
    "$@"
  fi
}

uninstall() {
  if [ -n "$SYSTEM" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now smp-server 2>/dev/null || true
  fi
  rm -f "$ROOT$UNIT" "$ROOT$LINK" "$ROOT$BIN_DIR/smp-server" "$ROOT$BIN_DIR/smp-server.previous" "$ROOT$BIN_DIR/smp-server.new" \
    "$ROOT$BIN_DIR/smp-update-guard" "$ROOT$BIN_DIR/smp-server.update-pending" "$ROOT$BIN_DIR/smp-server.failed"
  rmdir "$ROOT$BIN_DIR" "$ROOT/opt/simplex" 2>/dev/null || true
  [ -n "$SYSTEM" ] && command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload || true
  if [ -n "$PURGE" ]; then
    rm -rf "$ROOT$CFG_DIR" "$ROOT$LOG_DIR"
    if [ -n "$SYSTEM" ] && id smp >/dev/null 2>&1; then userdel smp 2>/dev/null || true; fi
    say "removed smp-server, its configuration, keys and data"
  else
    say "removed smp-server; the server identity and data are kept in $ROOT$CFG_DIR and $ROOT$LOG_DIR (use --uninstall --purge to delete them)"
  fi
}

if [ "$ACTION" = uninstall ]; then
  uninstall
  exit 0
fi

[ -n "$REPO" ] || die "no release repository: pass --repo owner/name (or SMP_REPOSITORY)"
case "$REPO" in */*/*|/*|*/) die "--repo must be owner/name" ;; */*) ;; *) die "--repo must be owner/name" ;; esac
[ -n "$(printf '%s' "$RELEASE_KEYS" | tr -d ' \n')" ] || die "this installer has no release key embedded; get it from the project's release page"

# Tools: a downloader, openssl (3.x, for ed25519), tar, sha256sum.
missing=
command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 || missing="$missing curl"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v tar >/dev/null 2>&1 || missing="$missing tar"
command -v sha256sum >/dev/null 2>&1 || missing="$missing coreutils"
if [ -n "$missing" ]; then
  if [ -n "$SYSTEM" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing ca-certificates >/dev/null
  else
    die "missing tools:$missing"
  fi
fi

fetch() { # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  else
    wget -q -O "$2" "$1"
  fi
}

case "$(uname -m)" in
  x86_64|amd64) ARCH=x86_64 ;;
  aarch64|arm64) ARCH=aarch64 ;;
  *) die "unsupported machine $(uname -m)" ;;
esac
TARGET="$ARCH-unknown-linux-gnu"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT INT TERM

case "$VER" in
  latest) rel_url="$API_URL/repos/$REPO/releases/latest"; say "looking up the newest release of $REPO" ;;
  v[0-9]*|[0-9]*)
    case "$VER" in *[!0-9A-Za-z.+-]*) die "VER '$VER' is not a release tag such as v1.2.3" ;; esac
    rel_url="$API_URL/repos/$REPO/releases/tags/v${VER#v}"; say "looking up release v${VER#v} of $REPO" ;;
  *) die "VER '$VER' is not a release tag such as v1.2.3 (or latest)" ;;
esac
fetch "$rel_url" "$WORK/release.json" || die "cannot fetch $rel_url (does release $VER exist?)"
# No jq on a bare server: split the JSON at commas and braces and pick the fields.
tr ',{}' '\n\n\n' < "$WORK/release.json" > "$WORK/fields"
TAG="$(sed -n 's/^ *"tag_name" *: *"\([^"]*\)".*/\1/p' "$WORK/fields" | head -n 1)"
[ -n "$TAG" ] || die "the release list has no tag_name"
VERSION="${TAG#v}"
asset_url() {
  sed -n 's/^ *"browser_download_url" *: *"\([^"]*\)".*/\1/p' "$WORK/fields" | grep "/$1\$" | head -n 1
}
# A static (musl) build runs on any distribution; prefer it when the release has one.
if [ -n "$(asset_url "smp-server-$VERSION-$ARCH-unknown-linux-musl.tar.gz")" ]; then
  TARGET="$ARCH-unknown-linux-musl"
fi
ASSET="smp-server-$VERSION-$TARGET.tar.gz"
for f in "$ASSET" SHA256SUMS SHA256SUMS.sig; do
  url="$(asset_url "$f")"
  [ -n "$url" ] || die "release $TAG has no asset $f"
  fetch "$url" "$WORK/$f" || die "cannot download $url"
done

# SHA256SUMS.sig holds one 64-byte ed25519 signature per signing key; accept the file when one
# of them verifies with one of the keys above. Then the archive must match its line.
verify_sums() {
  n=$(( $(wc -c < "$WORK/SHA256SUMS.sig") / 64 ))
  [ "$n" -ge 1 ] || return 1
  for key in $RELEASE_KEYS; do
    # SubjectPublicKeyInfo of an ed25519 key: a fixed 12-byte prefix and the raw key.
    { printf '\060\052\060\005\006\003\053\145\160\003\041\000'; printf '%s' "$key" | base64 -d; } > "$WORK/key.der" 2>/dev/null || continue
    [ "$(wc -c < "$WORK/key.der")" -eq 44 ] || continue
    i=0
    while [ "$i" -lt "$n" ]; do
      dd if="$WORK/SHA256SUMS.sig" of="$WORK/one.sig" bs=64 skip="$i" count=1 2>/dev/null
      if openssl pkeyutl -verify -pubin -keyform DER -inkey "$WORK/key.der" -rawin \
          -in "$WORK/SHA256SUMS" -sigfile "$WORK/one.sig" >/dev/null 2>&1; then
        return 0
      fi
      i=$((i + 1))
    done
  done
  return 1
}
verify_sums || die "the signature of SHA256SUMS in release $TAG does not verify with the installer's release keys (needs OpenSSL 3); nothing was installed"
grep " [* ]\?$ASSET\$" "$WORK/SHA256SUMS" > "$WORK/sum" || die "SHA256SUMS does not list $ASSET"
(cd "$WORK" && sha256sum -c --status sum) || die "$ASSET does not match SHA256SUMS; nothing was installed"
say "release $TAG: signature and checksum verified"

mkdir -p "$WORK/x"
tar -xzf "$WORK/$ASSET" -C "$WORK/x" smp-server || die "cannot unpack $ASSET"
got="$("$WORK/x/smp-server" --version 2>/dev/null | sed -n 1p || true)"
[ "$got" = "SMP server v$VERSION" ] || die "the downloaded binary does not run here (it printed '$got'; glibc too old?)"

# User and directories.
if [ -n "$SYSTEM" ] && ! id smp >/dev/null 2>&1; then
  useradd --system --home-dir "$LOG_DIR" --shell /usr/sbin/nologin --user-group smp
  say "created user smp"
fi
mkdir -p "$ROOT$CFG_DIR" "$ROOT$LOG_DIR" "$ROOT$BIN_DIR" "$ROOT$(dirname "$LINK")" "$ROOT$(dirname "$UNIT")"
chmod 0750 "$ROOT$CFG_DIR" "$ROOT$LOG_DIR"
# The service updates itself, so it owns the binary's directory (and nothing else outside its data).
[ -z "$SYSTEM" ] || chown smp:smp "$ROOT$CFG_DIR" "$ROOT$LOG_DIR" "$ROOT$BIN_DIR"

# Binary: staged next to the old one and renamed over it, keeping the previous for rollback.
if [ -f "$ROOT$BIN_DIR/smp-server" ]; then
  cp -p "$ROOT$BIN_DIR/smp-server" "$ROOT$BIN_DIR/smp-server.previous"
fi
cp "$WORK/x/smp-server" "$ROOT$BIN_DIR/smp-server.new"
chmod 0755 "$ROOT$BIN_DIR/smp-server.new"
[ -z "$SYSTEM" ] || chown smp:smp "$ROOT$BIN_DIR/smp-server.new"
mv -f "$ROOT$BIN_DIR/smp-server.new" "$ROOT$BIN_DIR/smp-server"
ln -sf "$BIN_DIR/smp-server" "$ROOT$LINK"
guard_text > "$ROOT$BIN_DIR/smp-update-guard"
chmod 0755 "$ROOT$BIN_DIR/smp-update-guard"
say "installed $BIN_DIR/smp-server ($TAG)"

# systemd unit. unit_text PREFIX: PREFIX is empty for the real unit, ROOT for a copy that
# systemd-analyze can check against the files under ROOT.
unit_text() {
  P="$1"
  cat <<UNIT
[Unit]
Description=SimpleX SMP server (smp-server)
Documentation=https://github.com/$REPO
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=smp
Group=smp
Environment=SMP_SERVER_CFG_PATH=$P$CFG_DIR
Environment=SMP_SERVER_LOG_PATH=$P$LOG_DIR
# Rolls back a self-update whose binary failed to start (it removes nothing otherwise).
ExecStartPre=$P$BIN_DIR/smp-update-guard $P$BIN_DIR/smp-server
ExecStart=$P$BIN_DIR/smp-server start
# SIGINT lets the server save messages and close connections, as the reference expects.
KillSignal=SIGINT
# A memory-store server saves every message at stop: never cut that short (the reference's unit
# also waits without limit).
TimeoutStopSec=infinity
Restart=on-failure
RestartSec=5
# After a self-update the server exits with this status to be started as the new binary.
RestartForceExitStatus=$RESTART_STATUS
LimitNOFILE=65535
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictSUIDSGID=true
RestrictNamespaces=true
LockPersonality=true
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
ReadWritePaths=$P$CFG_DIR $P$LOG_DIR $P$BIN_DIR

[Install]
WantedBy=multi-user.target
UNIT
}
unit_text "" > "$ROOT$UNIT"
if command -v systemd-analyze >/dev/null 2>&1; then
  unit_text "$ROOT" > "$WORK/smp-server.service"
  systemd-analyze verify "$WORK/smp-server.service" || die "systemd-analyze verify rejected the unit"
fi

# Configuration: created once; a re-run keeps it.
INI="$ROOT$CFG_DIR/smp-server.ini"
if [ -f "$INI" ]; then
  say "keeping the existing configuration in $CFG_DIR"
else
  if [ -z "$IP" ]; then
    IP="$(hostname -I 2>/dev/null | awk '{print $1}')"
    [ -n "$IP" ] || IP=127.0.0.1
  fi
  set -- init -y --ip "$IP"
  [ -z "$FQDN" ] || set -- "$@" --fqdn "$FQDN"
  [ -z "$TOR" ] || set -- "$@" --tor
  if [ -n "$NO_PASSWORD" ]; then set -- "$@" --no-password
  elif [ -n "$PASSWORD" ]; then set -- "$@" --password "$PASSWORD"; fi
  SMP_SERVER_CFG_PATH="$ROOT$CFG_DIR" SMP_SERVER_LOG_PATH="$ROOT$LOG_DIR" \
    as_smp "$ROOT$BIN_DIR/smp-server" "$@" > "$WORK/init.log" 2>&1 \
    || { cat "$WORK/init.log" >&2; die "smp-server init failed"; }
  if [ -n "$PORTS" ]; then
    sed -i "s/^port = .*/port = $PORTS/" "$INI"
  fi
  # Updates come from the repository this installer used.
  sed -i "/^\[UPDATE\]/a mode = $UPDATE_MODE\nrepository = $REPO\napi_url = $API_URL" "$INI"
  say "initialised the server in $CFG_DIR"
fi

# Firewall.
ports_now="$(sed -n 's/^port = //p' "$INI" | head -n 1)"
if [ -n "$SYSTEM" ]; then
  open_ports="$(printf '%s' "$ports_now" | tr ',' ' ')"
  [ -z "$FQDN" ] || open_ports="$open_ports 80"
  if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q "Status: active"; then
    for p in $open_ports; do ufw allow "$p/tcp" >/dev/null; done
    say "ufw: opened $open_ports"
  elif command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
    for p in $open_ports; do firewall-cmd --permanent --add-port="$p/tcp" >/dev/null; done
    firewall-cmd --reload >/dev/null
    say "firewalld: opened $open_ports"
  fi
  systemctl daemon-reload
  systemctl enable smp-server >/dev/null 2>&1
  systemctl restart smp-server
  say "service smp-server started (journalctl -u smp-server -f to follow it)"
fi

fp="$(cat "$ROOT$CFG_DIR/fingerprint")"
pw="$(sed -n 's/^create_password = //p' "$INI" | head -n 1)"
host="$(sed -n 's/^host = //p' "$INI" | head -n 1)"
addr="smp://$fp"
[ -z "$pw" ] || addr="$addr:$pw"
first_port="${ports_now%%,*}"
onion=""
if [ -n "$TOR" ]; then
  # The onion service publishes its address once embedded Tor has launched it.
  onion_file="$ROOT$LOG_DIR/onion-address"
  if [ -n "$SYSTEM" ]; then
    i=0
    while [ ! -s "$onion_file" ] && [ "$i" -lt 120 ]; do sleep 1; i=$((i + 1)); done
  fi
  if [ -s "$onion_file" ]; then
    onion="$(head -n 1 "$onion_file")"
  else
    say "the onion address is written to $LOG_DIR/onion-address once the server has started"
  fi
fi
addr="$addr@$host"
[ -z "$onion" ] || addr="$addr,$onion"
[ "$first_port" = 5223 ] || addr="$addr:$first_port"
echo "Server address: $addr"
