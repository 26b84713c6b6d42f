#!/usr/bin/env bash
# Run the fuzz targets: `fuzz/run.sh <seconds> [target...]` runs each target (all by default)
# for <seconds> of wall time with libFuzzer and exits non-zero if any of them found a crash,
# a panic, a timeout (10 s on one input) or an out-of-memory (2 GB).
#
#   fuzz/run.sh --build            build the instrumented targets only
#   fuzz/run.sh --seeds            regenerate fuzz/seeds/ with our real encoders (make-seeds)
#   fuzz/run.sh --list             print the target names
#
# Stable toolchain only: libfuzzer-sys compiles libFuzzer from source (needs a C++ compiler,
# see .ci/setup-fuzz.sh) and the coverage instrumentation is rustc's stable `sancov-module`
# pass; no sanitizer (that would need nightly). Overflow checks and debug assertions are on
# (fuzz/Cargo.toml's release profile).
#
# Environment: FUZZ_TARGET_DIR (build dir, default $CARGO_TARGET_DIR/fuzz or fuzz/target),
# FUZZ_WORK (grown corpora and crash artifacts, default $FUZZ_TARGET_DIR/work),
# FUZZ_JOBS (cargo build jobs), FUZZ_NICE (nice level for the fuzzers, default 0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

TARGETS=(block command response handshake forward store_log journal messages_log ntfs_log ini stats control http)
triple="$(rustc -vV | sed -n 's/^host: //p')"
export FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$here/target}/fuzz}"
work="${FUZZ_WORK:-$FUZZ_TARGET_DIR/work}"
nice_level="${FUZZ_NICE:-0}"

build() {
  # Not --locked: fuzz/Cargo.lock pins what it has; a crate new to the workspace is added to it.
  # --target keeps RUSTFLAGS (and so the instrumentation) off build scripts and proc macros.
  RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares" \
  CARGO_TARGET_DIR="$FUZZ_TARGET_DIR" \
    cargo build --release --target "$triple" ${FUZZ_JOBS:+-j "$FUZZ_JOBS"} \
      $(printf -- '--bin %s ' "${TARGETS[@]}")
}

case "${1:-}" in
  --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
  --build) build; exit 0 ;;
  --seeds)
    # Plain (uninstrumented) build: the generator is an ordinary program.
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}" cargo run --quiet --bin make-seeds -- "$here/seeds"
    exit 0 ;;
  ''|-h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

secs="$1"; shift
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "run.sh: <seconds> must be a number, got '$secs'" >&2; exit 2; }
selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=("${TARGETS[@]}")
for t in "${selected[@]}"; do
  printf '%s\n' "${TARGETS[@]}" | grep -qx "$t" || { echo "run.sh: no target '$t' (see --list)" >&2; exit 2; }
done

echo "fuzz: building ${#TARGETS[@]} targets (release, sancov, overflow checks) in $FUZZ_TARGET_DIR"
build
bin="$FUZZ_TARGET_DIR/$triple/release"

failed=()
for t in "${selected[@]}"; do
  corpus="$work/corpus/$t"; artifacts="$work/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  seeds="$here/seeds/$t"; [ -d "$seeds" ] || seeds=""
  log="$work/$t.log"
  # The first directory collects new inputs; the committed seeds are read only.
  set +e
  TIMEFORMAT='%R %U %S'
  { time nice -n "$nice_level" "$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$corpus" ${seeds:+"$seeds"} >"$log" 2>&1 ; } 2>"$log.time"
  rc=$?
  set -e
  read -r wall user sys <"$log.time" || true
  cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN {printf "%.0f", u + s}')
  runs=$(awk '/stat::number_of_executed_units/ {n=$2} END {print n+0}' "$log")
  # -a: a log can hold raw bytes (libFuzzer's output of some runs of `stats` did), and grep
  # then prints "Binary file matches" instead of the coverage
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  # One line per run in the work dir: what a campaign's CPU time per target is added up from.
  echo "$(date -u +%FT%TZ) $t rc=$rc wall=${wall:-?} cpu=$cpu runs=$runs cov=${cov:-?}" >>"$work/history.txt"
  if [ $rc -eq 0 ]; then
    echo "fuzz: $t ok: ${wall%.*} s wall, $cpu s CPU, $runs runs, coverage ${cov:-?}"
  else
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); last lines of $log:"
    grep -E 'ERROR|panicked|SUMMARY|Test unit written|artifact' "$log" | tail -n 12 | sed 's/^/  /'
    echo "  reproduce: $bin/$t <artifact above>"
  fi
done
# The closing line in the form CI reads: targets without / with a crash.
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (artifacts under $work/artifacts)"
  echo "fuzz: $(( ${#selected[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
  exit 1
fi
echo "fuzz: ${#selected[@]} passed, 0 failed"
