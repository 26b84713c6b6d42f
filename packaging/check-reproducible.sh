#!/usr/bin/env bash
# Build one commit twice, from two clones at different paths, and compare the release archives
# and binaries byte for byte.
#
#   packaging/check-reproducible.sh [--profile release] [--commit HEAD] [--work DIR]
#                                   [--shared-target DIR]
#
# Each clone builds with its own target directory by default (nothing shared: the full check,
# ~2 release builds). `--shared-target DIR` lets both use DIR: registry dependencies are then
# built once and only the workspace crates twice (the quick CI check, tests/dist_reproducible.rs
# with the `repro-check` profile); both clones' paths are remapped in both builds so the shared
# dependencies see identical flags.
set -euo pipefail
profile=release commit=HEAD work="" shared=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --commit) commit="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --shared-target) shared="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "check-reproducible: unknown option $1" >&2; exit 2 ;;
  esac
done
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$work" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
commit="$(git -C "$repo" rev-parse "$commit")"
a="$work/a/smp-server"
b="$work/second-clone/elsewhere/smp-server"
rm -rf "$a" "$b"
for d in "$a" "$b"; do
  git clone --quiet --no-local "$repo" "$d"
  git -C "$d" checkout --quiet "$commit"
done
flags=""
[ -z "$shared" ] || flags="--remap-path-prefix=$a=/build/smp-server --remap-path-prefix=$b=/build/smp-server"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)"
for d in "$a" "$b"; do
  t="${shared:-$d/target}"
  start=$(date +%s)
  CARGO_TARGET_DIR="$t" SMP_RELEASE_PROFILE="$profile" SMP_RELEASE_RUSTFLAGS="$flags" \
    bash "$d/packaging/build-release.sh" --unsigned --version "$version" --out "$d/dist" >/dev/null
  echo "built $d in $(( $(date +%s) - start )) s" >&2
done
status=0
for f in "$a/dist/v$version"/*; do
  name="$(basename "$f")"
  if cmp -s "$f" "$b/dist/v$version/$name"; then
    echo "identical: $name $(sha256sum < "$f" | cut -c1-64)"
  else
    echo "DIFFERENT: $name" >&2
    status=1
  fi
done
exit "$status"
