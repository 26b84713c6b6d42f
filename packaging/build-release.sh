#!/usr/bin/env bash
# Build, pack and sign an smp-server release, laid out as a GitHub release.
#
#   packaging/build-release.sh --version 1.2.3 --key release.key [--key next.key] \
#       [--out dist] [--target x86_64-unknown-linux-gnu] [--repo owner/name] \
#       [--api-url https://api.github.com] [--download-url https://github.com]
#
# Output in <out>/v<version>/:
#   smp-server-<version>-<target>.tar.gz   the binary, zipsign-signed (ed25519) by every --key,
#                                          the signature bound to this file name
#   SHA256SUMS                             sha256sum of the archive(s)
#   SHA256SUMS.sig                         raw ed25519 signatures of SHA256SUMS, 64 bytes per key,
#                                          in --key order (what install.sh checks with openssl)
#   release.json                           the release as GitHub's API returns it
#                                          (GET /repos/<repo>/releases/latest)
#   BUILD-INFO                             toolchain, target, commit, SOURCE_DATE_EPOCH, and
#                                          the newest glibc symbol needed
#
# Reproducible (packaging/reproduce.sh rebuilds a release and compares it byte for byte):
# the toolchain of rust-toolchain.toml, `cargo build --locked`, source, cargo home and target
# paths remapped out of the binary, SOURCE_DATE_EPOCH (default: the commit's time) as the only
# time, a sorted tar with fixed owner and mtime, gzip without name or time. SHA256SUMS lists the
# archive and the bare binary (`smp-server-<version>-<target>`), so a rebuild can be checked
# against the signed sums. `--unsigned` builds the archive without signing (what reproduce.sh
# does; it needs no key).
#
# Keys are zipsign key files (`zipsign gen-key release.key release.pub`): 64 bytes, the first
# 32 the ed25519 seed. Environment: SMP_RELEASE_PROFILE (cargo profile, default release),
# SMP_UPDATER_KEYS (extra keys compiled in; tests only), CARGO_TARGET_DIR.
set -euo pipefail

version="" out="dist" target="" repo="${SMP_UPDATE_REPOSITORY:-}" keys=() unsigned=
api_url="https://api.github.com" download_url="https://github.com"
die() { echo "build-release: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="${2:-}"; shift 2 ;;
    --key) keys+=("${2:-}"); shift 2 ;;
    --unsigned) unsigned=1; shift ;;
    --out) out="${2:-}"; shift 2 ;;
    --target) target="${2:-}"; shift 2 ;;
    --repo) repo="${2:-}"; shift 2 ;;
    --api-url) api_url="${2%/}"; shift 2 ;;
    --download-url) download_url="${2%/}"; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -n "$version" ] || die "--version is required (e.g. --version 1.2.3)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] || die "--version '$version' is not a semantic version"
[ "${#keys[@]}" -gt 0 ] || [ -n "$unsigned" ] || die "at least one --key (a zipsign private key file) is required (or --unsigned)"
for k in ${keys[@]+"${keys[@]}"}; do
  [ -f "$k" ] || die "key file '$k' does not exist"
  [ "$(wc -c < "$k")" -eq 64 ] || die "key file '$k' is not a zipsign private key (64 bytes)"
done
if [ -z "$unsigned" ]; then
  command -v zipsign >/dev/null || die "zipsign is not installed: cargo install zipsign (or run .ci/setup-dist.sh)"
  command -v openssl >/dev/null || die "openssl is not installed"
fi
[ -z "$repo" ] || [[ "$repo" =~ ^[^/]+/[^/]+$ ]] || die "--repo '$repo' is not owner/name"

case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")/.."
src="$PWD"
host="$(rustc -vV | sed -n 's/^host: //p')"
target="${target:-$host}"
profile="${SMP_RELEASE_PROFILE:-release}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
target_abs="$(cd "$target_dir" && pwd)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
commit="${SMP_SERVER_COMMIT:-$(git rev-parse HEAD 2>/dev/null || sed -n '/^[0-9a-f]\{40\}$/p' packaging/COMMIT)}"
commit="${commit:-unknown}"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
export SOURCE_DATE_EPOCH
# Only paths that differ between machines are remapped; the rest of the command is fixed.
# (SMP_RELEASE_RUSTFLAGS may already map this checkout, e.g. two clones sharing a target dir.)
remap="--remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$target_abs=/build/target"
case " ${SMP_RELEASE_RUSTFLAGS:-} " in
  *" --remap-path-prefix=$src=/build/smp-server "*) ;;
  *) remap="--remap-path-prefix=$src=/build/smp-server $remap" ;;
esac

echo "Building smp-server $version ($commit) for $target (profile $profile)..." >&2
SMP_SERVER_VERSION="$version" SMP_UPDATE_REPOSITORY="$repo" SMP_SERVER_COMMIT="$commit" \
  RUSTFLAGS="${SMP_RELEASE_RUSTFLAGS:-} $remap" \
  cargo build --locked --quiet --profile "$profile" --target "$target" -p smp-server --bin smp-server
pdir="$profile"; [ "$profile" = "dev" ] && pdir="debug"
bin="$target_dir/$target/$pdir/smp-server"
[ -x "$bin" ] || die "build produced no binary at $bin"
if [ "$target" = "$host" ]; then
  got="$("$bin" --version | sed -n 1p)"
  [ "$got" = "SMP server v$version" ] || die "built binary reports '$got', expected v$version"
fi

rel="$out/v$version"
mkdir -p "$rel"
asset="smp-server-$version-$target.tar.gz"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/smp-server"
touch -d "@$SOURCE_DATE_EPOCH" "$stage/smp-server"
# Deterministic: sorted names, numeric root owner, the source's time, gzip without name/time.
tar --sort=name --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -C "$stage" -cf - smp-server | gzip -9 -n > "$rel/$asset"
# The bare binary too (listed in SHA256SUMS, so a rebuilt binary can be checked on its own).
install -m 0755 "$bin" "$rel/smp-server-$version-$target"
if [ -n "$unsigned" ]; then
  chmod 0644 "$rel/$asset"
  (cd "$rel" && sha256sum smp-server-* > SHA256SUMS)
  echo "$rel"
  exit 0
fi
# The signature is salted with the published name, so a renamed archive does not verify.
zipsign sign tar -f -c "$asset" "$rel/$asset" "${keys[@]}" >/dev/null
chmod 0644 "$rel/$asset"
# Every archive and binary of this version (another --target adds to the release).
(cd "$rel" && sha256sum smp-server-* > SHA256SUMS)

# SHA256SUMS.sig: one raw ed25519 signature per key, made with openssl from the zipsign seed.
: > "$rel/SHA256SUMS.sig"
for k in "${keys[@]}"; do
  { printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20'; head -c 32 "$k"; } > "$stage/key.der"
  openssl pkeyutl -sign -rawin -keyform DER -inkey "$stage/key.der" -in "$rel/SHA256SUMS" >> "$rel/SHA256SUMS.sig"
  rm -f "$stage/key.der"
done

glibc=""
if [[ "$target" == *musl* ]]; then
  glibc="none (static musl build)"
elif command -v objdump >/dev/null; then
  glibc="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)"
else
  glibc="$(grep -ao 'GLIBC_[0-9]*\.[0-9.]*' "$bin" | sort -uV | tail -1 || true)"
fi
{
  echo "version: $version"
  echo "target: $target"
  echo "profile: $profile"
  echo "repository: $repo"
  echo "rustc: $(rustc -V)"
  echo "commit: $commit"
  echo "SOURCE_DATE_EPOCH: $SOURCE_DATE_EPOCH"
  echo "build host libc: $(ldd --version 2>/dev/null | sed -n 1p)"
  echo "newest glibc symbol required: ${glibc:-none}"
} > "$rel/BUILD-INFO"

# release.json, as GitHub's API returns a release; asset ids are derived from the names.
python3 - "$rel" "$version" "$repo" "$api_url" "$download_url" <<'PY'
import hashlib, json, os, sys, datetime
rel, version, repo, api, dl = sys.argv[1:6]
repo = repo or "OWNER/REPO"
tag = "v" + version
def aid(name):
    return int(hashlib.sha256(f"{tag}/{name}".encode()).hexdigest()[:12], 16)
assets = []
for name in sorted(os.listdir(rel)):
    if name == "release.json":
        continue
    path = os.path.join(rel, name)
    data = open(path, "rb").read()
    assets.append({
        "id": aid(name),
        "name": name,
        "label": "",
        "content_type": "application/gzip" if name.endswith(".tar.gz") else "application/octet-stream",
        "state": "uploaded",
        "size": len(data),
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "url": f"{api}/repos/{repo}/releases/assets/{aid(name)}",
        "browser_download_url": f"{dl}/{repo}/releases/download/{tag}/{name}",
    })
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
info = open(os.path.join(rel, "BUILD-INFO")).read()
release = {
    "url": f"{api}/repos/{repo}/releases/{aid('release')}",
    "html_url": f"{dl}/{repo}/releases/tag/{tag}",
    "id": aid("release"),
    "tag_name": tag,
    "name": tag,
    "draft": False,
    "prerelease": "-" in version,
    "created_at": now,
    "published_at": now,
    "body": "smp-server " + tag + "\n\n```\n" + info + "```\n",
    "assets": assets,
}
json.dump(release, open(os.path.join(rel, "release.json"), "w"), indent=2)
PY
echo "$rel"
