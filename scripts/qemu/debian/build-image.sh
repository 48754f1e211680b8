#!/usr/bin/env bash
# Build (or reuse) the Debian 12 guest image for the seed benchmarks (npm run bench:seed).
#
# A root filesystem made by mmdebstrap from Debian's own packages (systemd as init, udev, the
# workload tools: bonnie++, fio, Xvfb with X clients and fonts, gcc/make), plus the upstream
# source of a real C project (lua5.4, from Debian's source archive) for the compile workload,
# plus our static guest programs (sp-agent, sp-fill) started by a systemd unit so the host drives
# the guest through the same control channel as the busybox guests. Written as ext4 onto a
# sparse raw image. The guest boots with the lab's Debian 6.12 kernel and initramfs
# (scripts/qemu/setup.sh), whose /init mounts sp_root= and switch_roots to /sbin/init.
#
# Cached: $SAMEPAGE_SEED_CACHE/debian-SUITE.img (default /var/cache/samepage) with a .stamp
# holding the sha256 of the recipe (this script, the unit file, the guest programs, the package
# list, the source package versions). The image is rebuilt when missing or when the stamp
# differs; otherwise this takes well under a second. Prints the image path last.
#
# Environment:
#   SAMEPAGE_SEED_CACHE   cache dir (default /var/cache/samepage)
#   SAMEPAGE_SEED_SUITE   Debian suite (default bookworm)
#   SAMEPAGE_SEED_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   SAMEPAGE_SEED_IMAGE_MIB  image size (default 3072; sparse, only the used blocks take disk)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
QEMU_DIR="$(cd "$HERE/.." && pwd)"
CACHE="${SAMEPAGE_SEED_CACHE:-/var/cache/samepage}"
SUITE="${SAMEPAGE_SEED_SUITE:-bookworm}"
MIRROR="${SAMEPAGE_SEED_MIRROR:-http://deb.debian.org/debian}"
IMAGE_MIB="${SAMEPAGE_SEED_IMAGE_MIB:-3072}"
IMG="$CACHE/debian-$SUITE.img"
# Source packages whose upstream tarball goes into the image for the compile workload.
SOURCES=(lua5.4)
PACKAGES=(
  systemd-sysv udev procps                       # a real init, device units for the serial getty
  bonnie++ fio                                   # disk workloads
  xvfb x11-apps x11-utils xterm xfonts-base fonts-dejavu-core   # the desktop-like workload
  gcc make libc6-dev                             # the compile workload
)

say() { printf 'samepage-seed-image: %s\n' "$*" >&2; }
die() { printf 'samepage-seed-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root, loop-free mkfs of a root-owned tree); rerun with sudo"
case "$IMAGE_MIB" in ''|*[!0-9]*) die "SAMEPAGE_SEED_IMAGE_MIB must be a whole number of MiB, got '$IMAGE_MIB'" ;; esac
[ "$IMAGE_MIB" -ge 1024 ] || die "SAMEPAGE_SEED_IMAGE_MIB must be at least 1024 (the root filesystem alone is ~700 MiB)"
mkdir -p "$CACHE" || die "cannot create $CACHE; set SAMEPAGE_SEED_CACHE to a writable directory"
exec 9>"$CACHE/.debian-image.lock"
flock 9

# The lab gives the kernel, the initramfs that can mount the root, and the static guest programs.
bash "$QEMU_DIR/setup.sh" >&2 || die "scripts/qemu/setup.sh failed"
LAB="${SAMEPAGE_LAB:-/var/cache/samepage-lab}"
for f in "$LAB/bin/sp-agent" "$LAB/bin/sp-fill"; do [ -x "$f" ] || die "$f missing after setup.sh"; done

need() { command -v "$1" >/dev/null 2>&1; }
if ! need mmdebstrap || ! need mkfs.ext4; then
  say "installing mmdebstrap e2fsprogs"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap e2fsprogs >/dev/null \
    || die "apt-get install mmdebstrap e2fsprogs failed"
fi

# --- the compile workload's source, from Debian's source archive ------------------------------
# A private apt state with only a deb-src line, so the host's apt configuration is untouched.
SRCDIR="$CACHE/src"; APTSRC="$CACHE/apt-src"
mkdir -p "$SRCDIR" "$APTSRC/lists/partial"
echo "deb-src $MIRROR $SUITE main" > "$APTSRC/sources.list"
APT_SRC_OPTS=(-o "Dir::Etc::sourcelist=$APTSRC/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$APTSRC/lists")
src_version() { # (no lists yet: apt-cache fails, which must not end the script under pipefail)
  local out; out=$(apt-cache "${APT_SRC_OPTS[@]}" showsrc "$1" 2>/dev/null || true)
  printf '%s\n' "$out" | sed -n 's/^Version: //p' | sort -rV | head -1
}
versions=()
for s in "${SOURCES[@]}"; do
  v=$(src_version "$s")
  if [ -z "$v" ]; then
    apt-get "${APT_SRC_OPTS[@]}" update -qq || die "apt-get update of deb-src $MIRROR $SUITE failed"
    v=$(src_version "$s")
  fi
  [ -n "$v" ] || die "source package $s not found in deb-src $MIRROR $SUITE"
  versions+=("$s=$v")
done

STAMP=$( {
  cat "$0" "$HERE/samepage-agent.service" "$LAB/bin/sp-agent" "$LAB/bin/sp-fill"
  echo "$SUITE $MIRROR $IMAGE_MIB ${PACKAGES[*]} ${versions[*]}"
} | sha256sum | cut -d' ' -f1)
if [ -f "$IMG" ] && [ "$(cat "$IMG.stamp" 2>/dev/null)" = "$STAMP" ]; then
  say "image current: $IMG"
  echo "$IMG"
  exit 0
fi

t0=$(date +%s.%N)
for s in "${SOURCES[@]}"; do
  if ! ls "$SRCDIR/${s}_"*.orig.tar.* >/dev/null 2>&1; then
    (cd "$SRCDIR" && apt-get "${APT_SRC_OPTS[@]}" source --download-only -qq "$s" 2>&1 | grep -v '_apt' >&2 || true)
    ls "$SRCDIR/${s}_"*.orig.tar.* >/dev/null 2>&1 || die "apt-get source --download-only $s fetched no .orig.tar"
  fi
done

WORK=$(mktemp -d "$CACHE/.build.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
ROOT="$WORK/root"
say "mmdebstrap $SUITE (${PACKAGES[*]})"
mmdebstrap --mode=root --variant=minbase --quiet \
  --aptopt='APT::Install-Recommends "false"' \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  "$SUITE" "$ROOT" "$MIRROR" >&2 || die "mmdebstrap $SUITE failed (is $MIRROR reachable?)"
t1=$(date +%s.%N)

# --- configure the tree -----------------------------------------------------------------------
echo seed > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 seed\n' > "$ROOT/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$ROOT/etc/fstab"
# Root logs in on the serial console without a password (a lab guest with no network).
chroot "$ROOT" passwd -d root >/dev/null
install -m 755 "$LAB/bin/sp-agent" "$ROOT/usr/local/sbin/sp-agent"
install -m 755 "$LAB/bin/sp-fill" "$ROOT/usr/local/sbin/sp-fill"
install -m 644 "$HERE/samepage-agent.service" "$ROOT/etc/systemd/system/samepage-agent.service"
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/samepage-agent.service "$ROOT/etc/systemd/system/multi-user.target.wants/samepage-agent.service"
# Timers that would start work of their own in the middle of a measurement.
for t in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$t"
done
mkdir -p "$ROOT/opt/samepage/src"
for s in "${SOURCES[@]}"; do cp "$SRCDIR/${s}_"*.orig.tar.* "$ROOT/opt/samepage/src/"; done
# Nothing downloaded is needed inside.
rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"*_Packages 2>/dev/null || true

# --- ext4 on a sparse raw image ---------------------------------------------------------------
truncate -s "${IMAGE_MIB}M" "$WORK/image"
mkfs.ext4 -q -L seedroot -d "$ROOT" "$WORK/image" || die "mkfs.ext4 -d failed"
t2=$(date +%s.%N)
used_mib=$(du -sm "$ROOT" | cut -f1)
cat > "$WORK/image.json" <<JSON
{"suite":"$SUITE","mirror":"$MIRROR","imageMiB":$IMAGE_MIB,"rootMiB":$used_mib,"packages":"${PACKAGES[*]}","sources":"${versions[*]}","mmdebstrapSeconds":$(echo "$t1 - $t0" | bc),"mkfsSeconds":$(echo "$t2 - $t1" | bc),"builtAt":"$(date -u +%FT%TZ)"}
JSON
mv "$WORK/image.json" "$IMG.json"
mv "$WORK/image" "$IMG"
echo "$STAMP" > "$IMG.stamp"
say "built $IMG (root tree ${used_mib} MiB; mmdebstrap $(echo "$t1 - $t0" | bc) s, mkfs $(echo "$t2 - $t1" | bc) s)"
echo "$IMG"
