#!/usr/bin/env bash
# Tools for the damaged-state tests (tests/persistence_damage.rs): mkfs.ext4 and chattr
# (e2fsprogs) for an ext4 file system on a loop device (mount/losetup from util-linux), used to
# make a journal write fail (an immutable file) and an fsync fail (the loop device's backing
# tmpfs is full). Idempotent; runs as root.
set -euo pipefail
need=()
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# Loop devices: the module may not be loaded on a fresh machine.
[ -e /dev/loop-control ] || modprobe loop || true
