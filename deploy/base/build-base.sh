#!/usr/bin/env bash
# Build the base image every tradeflow image starts from, without any registry:
# debootstrap a minimal Debian bookworm from the same mirror apt uses here, with
# Python 3.11 (Debian's python3; the server images add the headless JRE 17 on top),
# then `docker import` it.
#
#   deploy/base/build-base.sh [TAG]      # default tradeflow-base:bookworm
#
# Needs root, debootstrap and a running Docker engine. The image is made once and
# reused; delete it (docker rmi) to make it again.
set -euo pipefail
tag="${1:-tradeflow-base:bookworm}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists"
  exit 0
fi
mirror="${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d /tmp/tradeflow-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
packages=python3,python3-venv,ca-certificates,procps
echo "debootstrap bookworm from $mirror into $root ($packages)"
started=$(date +%s)
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -30 "$root.log" >&2
  exit 1
}
rm -f "$root.log"
# a small image: no apt lists, docs, man pages or caches
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/cache/* \
  "$root"/usr/share/locale/* "$root"/usr/share/info/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "base image $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')" \
     "in $(( $(date +%s) - started )) s"
