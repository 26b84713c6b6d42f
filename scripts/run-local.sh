#!/bin/sh
# Build the server, initialise a local configuration under ./local (first run only) and start it
# on 127.0.0.1:5223. Nothing is written outside this checkout.
set -eu
cd "$(dirname "$0")/.."
export SMP_SERVER_CFG_PATH="$PWD/local/etc"
export SMP_SERVER_LOG_PATH="$PWD/local/var"
cargo build --release
run() { cargo run --release --quiet -- "$@"; }
if [ ! -f "$SMP_SERVER_CFG_PATH/smp-server.ini" ]; then
  run init -y --ip 127.0.0.1 --no-password
  # Port 443 needs root; a local server listens on 5223 only.
  sed -i -e 's/^port\( *[:=] *\).*/port\15223/' -e 's/^https\( *[:=]\)/# https\1/' \
    "$SMP_SERVER_CFG_PATH/smp-server.ini"
fi
exec cargo run --release --quiet -- start
