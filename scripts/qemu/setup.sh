#!/usr/bin/env bash
# Prepare the QEMU guest lab: host packages, a Debian 6.12 guest kernel, our static guest
# programs and the initramfs. Idempotent; every step is skipped when its output is current, so a
# second run takes well under a second. Run as root (apt, mknod for /dev/console in the image).
#
# Environment:
#   SAMEPAGE_LAB           cache dir (default /var/cache/samepage-lab)
#   SAMEPAGE_GUEST_KERNEL  exact package to use, e.g. linux-image-6.12.115+deb12-amd64-unsigned
#                          (default: the newest linux-image-6.12.*+deb12-amd64-unsigned apt offers)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB="${SAMEPAGE_LAB:-/var/cache/samepage-lab}"
GUEST_SRC="$HERE/guest"
# Modules the guest needs for virtio-blk disks on the PCI transport, and ext4 (with the crc32c
# it asks the crypto API for, which nothing loads without modprobe) to mount a Debian root
# (sp_root=); whichever of them the kernel has built in (Debian 6.12: virtio_pci) is skipped,
# the rest and their dependencies go in.
GUEST_MODULES=(virtio_pci virtio_blk crc32c_generic ext4)

say() { printf 'samepage-lab: %s\n' "$*"; }
die() { printf 'samepage-lab: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "setup.sh must run as root (it installs apt packages and creates device nodes); rerun with sudo"
mkdir -p "$LAB" || die "cannot create lab dir $LAB; set SAMEPAGE_LAB to a writable directory"
# One setup at a time: tests in parallel workers may all call ensureLab().
exec 9>"$LAB/.setup.lock"
flock 9

# --- 1. host packages -------------------------------------------------------------------------
# package:command pairs; a package is installed only when its command is missing, so a machine
# that already has everything never touches apt.
NEED=(qemu-system-x86:qemu-system-x86_64 busybox-static:busybox gcc:gcc libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a cpio:cpio gzip:gzip)
missing=()
for pair in "${NEED[@]}"; do
  pkg="${pair%%:*}"; probe="${pair#*:}"
  if [ "${probe#/}" != "$probe" ]; then [ -e "$probe" ] || missing+=("$pkg")
  else command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
# busybox (dynamic) may be on the PATH without busybox-static; the guest needs the static one.
bb_status=$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)
[ "$bb_status" = "install ok installed" ] || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  say "installing apt packages: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
else
  say "apt packages present (qemu-system-x86 busybox-static gcc libc6-dev cpio gzip)"
fi
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "busybox-static did not provide $BUSYBOX"

# --- 2. guest kernel --------------------------------------------------------------------------
# The extracted kernel is reused as long as it is there; a new Debian point release does not
# force a 107 MB download on every run.
KDIR="$LAB/kernel"
pick_kernel_pkg() {
  if [ -n "${SAMEPAGE_GUEST_KERNEL:-}" ]; then echo "$SAMEPAGE_GUEST_KERNEL"; return; fi
  local list
  list=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' 2>/dev/null | awk '{print $1}')
  if [ -z "$list" ]; then
    apt-get update -qq || die "apt-get update failed while looking for a 6.12 guest kernel"
    list=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | awk '{print $1}')
  fi
  # Newest first; take the first one apt can actually download (some are listed without a candidate).
  local p
  for p in $(printf '%s\n' $list | sort -rV); do
    # (output captured first: with pipefail, grep -q closing the pipe early would fail the test)
    local policy
    policy=$(apt-cache policy "$p" 2>/dev/null || true)
    case "$policy" in *"Candidate: "[0-9]*) echo "$p"; return ;; esac
  done
  die "no linux-image-6.12.*+deb12-amd64-unsigned package is downloadable; enable bookworm-security/bookworm-backports in apt, or set SAMEPAGE_GUEST_KERNEL"
}
if [ -f "$KDIR/.complete" ]; then
  say "guest kernel cached: $(cat "$KDIR/.complete")"
else
  pkg=$(pick_kernel_pkg)
  say "downloading guest kernel $pkg"
  rm -rf "$KDIR" "$LAB/deb"; mkdir -p "$LAB/deb"
  # apt-get download as root warns about the _apt sandbox; the warning is harmless here.
  (cd "$LAB/deb" && apt-get download -qq "$pkg" 2>&1 | grep -v '_apt' || true)
  debs=("$LAB"/deb/*.deb)
  deb="${debs[0]}"
  [ -f "$deb" ] || die "apt-get download $pkg produced no .deb (is the package name right, and the Debian mirror reachable?)"
  dpkg -x "$deb" "$KDIR.tmp" || die "dpkg -x $deb failed"
  rm -f "$deb"
  mv "$KDIR.tmp" "$KDIR"
  echo "$pkg" > "$KDIR/.complete"
fi
vmlinuz=("$KDIR"/boot/vmlinuz-*)
VMLINUZ="${vmlinuz[0]}"
[ -f "$VMLINUZ" ] || die "no boot/vmlinuz-* in $KDIR; remove $KDIR and rerun"
KVER="${VMLINUZ##*/vmlinuz-}"

# --- 3. static programs -----------------------------------------------------------------------
BIN="$LAB/bin"; mkdir -p "$BIN"
# Outputs are rebuilt when the sha256 of their inputs changes (not by mtime: several checkouts,
# or an older commit's sources, may share one lab dir).
inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }
build() { # build NAME SRC...
  local name="$1"; shift
  local out="$BIN/$name" hash
  hash=$(inputs_hash "$@" "$HERE/setup.sh")
  if [ ! -x "$out" ] || [ "$(cat "$out.sha256" 2>/dev/null)" != "$hash" ]; then
    gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -o "$out.tmp" "$@" -lpthread \
      || die "compiling $name from $* failed"
    mv "$out.tmp" "$out"
    echo "$hash" > "$out.sha256"
    say "built $out"
  fi
}
build sp-fill "$GUEST_SRC/fill.c" "$GUEST_SRC/fillspec.c" "$GUEST_SRC/prng.c" "$GUEST_SRC/fillspec.h" "$GUEST_SRC/prng.h"
build sp-agent "$GUEST_SRC/agent.c"
build sp-launch "$HERE/launch.c"

# --- 4. initramfs -----------------------------------------------------------------------------
INITRD="$LAB/initramfs.cpio.gz"
# The Debian package ships no modules.dep (depmod runs at install time), so dependencies are read
# from each module's own .modinfo "depends=" string; names in modules.builtin are already in the
# kernel. Modules may be .ko or compressed (.ko.xz on Debian 6.12); busybox insmod only loads
# plain ELF, so they are unpacked here.
MODDIR="$KDIR/lib/modules/$KVER"
[ -f "$MODDIR/modules.builtin" ] || die "$MODDIR/modules.builtin missing; remove $KDIR and rerun"
unpack_module() { # unpack_module FILE -> plain .ko on stdout
  case "$1" in
    *.ko.xz)  xz -dc "$1" 2>/dev/null || "$BUSYBOX" unxz -c "$1" ;;
    *.ko.zst) zstd -dcq "$1" || die "cannot unpack $1: install zstd" ;;
    *.ko.gz)  gzip -dc "$1" ;;
    *.ko)     cat "$1" ;;
    *) die "unexpected module file $1" ;;
  esac
}
declare -A MOD_SEEN=()
MOD_ORDER=(); MOD_FORMATS=()
resolve_module() { # resolve_module NAME: appends NAME's deps, then NAME, to MOD_ORDER
  local name="${1//-/_}" file dep deps
  [ -n "${MOD_SEEN[$name]:-}" ] && return 0
  MOD_SEEN[$name]=1
  if grep -q "/${name}\.ko\$" "$MODDIR/modules.builtin" \
     || grep -q "/${name//_/[-_]}\.ko\$" "$MODDIR/modules.builtin"; then return 0; fi
  file=$(find "$MODDIR/kernel" -regextype posix-extended -regex ".*/${name//_/[-_]}\.ko(\.xz|\.zst|\.gz)?" -print -quit)
  [ -n "$file" ] || die "kernel $KVER has module $name neither built in nor as a file; use another SAMEPAGE_GUEST_KERNEL"
  deps=$(unpack_module "$file" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' ')
  for dep in $deps; do resolve_module "$dep"; done
  MOD_ORDER+=("$file"); MOD_FORMATS+=("${file##*/$name}")
}
for m in "${GUEST_MODULES[@]}"; do resolve_module "$m"; done
INITRD_HASH=$( { inputs_hash "$GUEST_SRC/init.sh" "$BIN/sp-fill" "$BIN/sp-agent" "$BUSYBOX" "$HERE/setup.sh" "${MOD_ORDER[@]}"; echo "$KVER"; } | sha256sum | cut -d' ' -f1)
need_initrd=0
[ -f "$INITRD" ] && [ "$(cat "$INITRD.sha256" 2>/dev/null)" = "$INITRD_HASH" ] || need_initrd=1
if [ "$need_initrd" = 1 ]; then
  ROOT=$(mktemp -d "$LAB/initramfs.XXXXXX")
  trap 'rm -rf "$ROOT"' EXIT
  mkdir -p "$ROOT"/{bin,dev,proc,sys,run,tmp,lib/modules}
  cp "$BUSYBOX" "$ROOT/bin/busybox"
  cp "$BIN/sp-fill" "$BIN/sp-agent" "$ROOT/bin/"
  cp "$GUEST_SRC/init.sh" "$ROOT/init"; chmod 755 "$ROOT/init"
  # The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
  mknod -m 600 "$ROOT/dev/console" c 5 1 || die "mknod /dev/console failed (setup.sh needs root)"
  : > "$ROOT/lib/modules/load-order"
  for file in "${MOD_ORDER[@]}"; do
    ko="${file##*/}"; ko="${ko%.ko*}.ko"
    unpack_module "$file" > "$ROOT/lib/modules/$ko" || die "cannot unpack $file"
    echo "$ko" >> "$ROOT/lib/modules/load-order"
  done
  (cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) | gzip -6 > "$INITRD.tmp" \
    || die "building the initramfs failed"
  mv "$INITRD.tmp" "$INITRD"
  echo "$INITRD_HASH" > "$INITRD.sha256"
  rm -rf "$ROOT"; trap - EXIT
  say "built $INITRD ($(stat -c %s "$INITRD") bytes; modules in load order: ${MOD_ORDER[*]##*/} (unpacked to .ko; shipped as: $(printf '%s\n' "${MOD_FORMATS[@]}" | sort -u | xargs)))"
else
  say "initramfs current: $INITRD"
fi

# --- 5. manifest for the TypeScript harness ---------------------------------------------------
MANIFEST="$LAB/lab.json"
cat > "$MANIFEST.tmp" <<JSON
{
  "labDir": "$LAB",
  "kernel": "$VMLINUZ",
  "kernelVersion": "$KVER",
  "kernelPackage": "$(cat "$KDIR/.complete")",
  "initramfs": "$INITRD",
  "qemu": "$(command -v qemu-system-x86_64)",
  "launch": "$BIN/sp-launch",
  "fill": "$BIN/sp-fill",
  "agent": "$BIN/sp-agent"
}
JSON
mv "$MANIFEST.tmp" "$MANIFEST"
say "ready: $MANIFEST (kernel $KVER)"
