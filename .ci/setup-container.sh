#!/usr/bin/env bash
# A container engine for tests/dist_container_image.rs: Debian's podman, rootful, with runc
# (crun refuses this machine's hybrid cgroups; the tests pass --runtime runc --cgroup-manager
# cgroupfs), and a local Debian bookworm base image made by mmdebstrap from Debian's mirror,
# because Docker Hub cannot be reached from here. Idempotent; run as root.
set -euo pipefail
missing=()
for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc mmdebstrap
fi
base=localhost/smp-debian:bookworm-slim
if ! podman image exists "$base"; then
  dir=/var/tmp/smp-container
  tar="$dir/debian-bookworm-minbase.tar"
  mkdir -p "$dir"
  if [ ! -s "$tar" ]; then
    mmdebstrap --quiet --variant=minbase --format=tar bookworm "$tar.part" http://deb.debian.org/debian
    mv "$tar.part" "$tar"
  fi
  podman import --quiet "$tar" "$base" >/dev/null
fi
