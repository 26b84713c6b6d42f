#!/usr/bin/env bash
# Rebuild a published release from its tag and compare it byte for byte.
#
#   packaging/reproduce.sh <tag> [--repo-url URL] [--release-dir DIR] [--download-url URL]
#                                [--repo owner/name]
#
# The published files (SHA256SUMS, BUILD-INFO and the archive for this machine) come from
# --release-dir (a directory you downloaded them to) or are downloaded from
# <download-url>/<repo>/releases/download/<tag>/ (default https://github.com). The source is
# cloned from --repo-url (default https://github.com/<repo>) at <tag> and built with
# packaging/build-release.sh --unsigned, the same toolchain (rust-toolchain.toml), profile and
# repository as BUILD-INFO records. Then:
#   - the rebuilt binary must have the sha256 that the signed SHA256SUMS lists;
#   - the rebuilt archive must equal the published one without its zipsign signature
#     (`zipsign unsign tar`), byte for byte.
# Check the signature of SHA256SUMS first (docs/releases.md); this script checks the build.
# Exit status 0 only when everything matches.
set -euo pipefail
die() { echo "reproduce: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: packaging/reproduce.sh <tag> [options] (see --help)"
case "$1" in -h|--help) sed -n '2,19p' "$0"; exit 0 ;; esac
tag="$1"; shift
repo="" repo_url="" release_dir="" download_url="https://github.com"
while [ $# -gt 0 ]; do
  case "$1" in
    --repo) repo="$2"; shift 2 ;;
    --repo-url) repo_url="$2"; shift 2 ;;
    --release-dir) release_dir="$2"; shift 2 ;;
    --download-url) download_url="${2%/}"; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
version="${tag#v}"
host="$(rustc -vV | sed -n 's/^host: //p')"
asset="smp-server-$version-$host.tar.gz"
binary="smp-server-$version-$host"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pub="$work/published"
mkdir -p "$pub"
if [ -n "$release_dir" ]; then
  for f in SHA256SUMS BUILD-INFO "$asset"; do
    [ -f "$release_dir/$f" ] || die "$release_dir has no $f"
    cp "$release_dir/$f" "$pub/"
  done
else
  [ -n "$repo" ] || die "--repo owner/name is needed to download the release (or --release-dir)"
  for f in SHA256SUMS BUILD-INFO "$asset"; do
    curl -fsSL -o "$pub/$f" "$download_url/$repo/releases/download/$tag/$f" || die "cannot download $f"
  done
fi
info() { sed -n "s/^$1: //p" "$pub/BUILD-INFO" | head -n 1; }
[ -n "$repo" ] || repo="$(info repository)"
profile="$(info profile)"; profile="${profile:-release}"
[ -n "$repo_url" ] || repo_url="https://github.com/$repo"
echo "Rebuilding $tag ($(info commit)) from $repo_url, profile $profile, for $host" >&2
git clone --quiet "$repo_url" "$work/src"
git -C "$work/src" -c advice.detachedHead=false checkout --quiet "$tag"
got_commit="$(git -C "$work/src" rev-parse HEAD)"
[ "$(info commit)" = "$got_commit" ] || die "tag $tag is commit $got_commit, but the release was built from $(info commit)"
[ "$(info 'rustc')" = "$(cd "$work/src" && rustc -V)" ] || echo "warning: the release was built with $(info rustc); this machine has $(cd "$work/src" && rustc -V)" >&2
CARGO_TARGET_DIR="${SMP_REPRODUCE_TARGET_DIR:-$work/target}" SMP_RELEASE_PROFILE="$profile" \
  SOURCE_DATE_EPOCH="$(info SOURCE_DATE_EPOCH)" \
  bash "$work/src/packaging/build-release.sh" --unsigned --version "$version" --repo "$repo" \
  --out "$work/out" >/dev/null
rebuilt="$work/out/v$version"
status=0
want="$(sed -n "s/^\([0-9a-f]\{64\}\)  $binary\$/\1/p" "$pub/SHA256SUMS")"
have="$(sha256sum < "$rebuilt/$binary" | cut -c1-64)"
if [ -n "$want" ] && [ "$want" = "$have" ]; then
  echo "binary: identical ($have)"
else
  echo "binary: DIFFERENT (published ${want:-not listed}, rebuilt $have)"; status=1
fi
if command -v zipsign >/dev/null 2>&1; then
  zipsign unsign tar -o "$work/unsigned.tar.gz" "$pub/$asset" >/dev/null
else
  die "zipsign is needed to strip the signature from $asset (cargo install --locked zipsign)"
fi
if cmp -s "$work/unsigned.tar.gz" "$rebuilt/$asset"; then
  echo "archive: identical apart from its signature ($asset)"
else
  echo "archive: DIFFERENT ($asset)"; status=1
fi
exit "$status"
