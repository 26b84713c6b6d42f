#!/bin/sh
# Build the server, initialise a local configuration under ./local (first run only) and start it
# on 127.0.0.1:5223. Nothing is written outside this checkout.
#   SMP_LOCAL_PORT     another port (default 5223)
#   SMP_LOCAL_PROFILE  cargo profile (default release; `dev` builds faster)
set -eu
cd "$(dirname "$0")/.."
export SMP_SERVER_CFG_PATH="$PWD/local/etc"
export SMP_SERVER_LOG_PATH="$PWD/local/var"
port="${SMP_LOCAL_PORT:-5223}"
profile="${SMP_LOCAL_PROFILE:-release}"
cargo build --locked --profile "$profile" -p smp-server --bin smp-server
run() { cargo run --locked --quiet --profile "$profile" -p smp-server --bin smp-server -- "$@"; }
if [ ! -f "$SMP_SERVER_CFG_PATH/smp-server.ini" ]; then
  run init -y --ip 127.0.0.1 --no-password
  # Port 443 needs root; a local server listens on one port only.
  sed -i -e "s/^port\( *[:=] *\).*/port\1$port/" -e 's/^https\( *[:=]\)/# https\1/' \
    "$SMP_SERVER_CFG_PATH/smp-server.ini"
fi
exec cargo run --locked --quiet --profile "$profile" -p smp-server --bin smp-server -- start
