#!/bin/busybox sh
# Guest /init for the samepage QEMU harness: mount the basics, load the virtio-blk modules,
# fill memory as the kernel command line asks (sp_fill=...), then become the control-channel
# agent on ttyS1. Everything here reports on the console (ttyS0) with a "SAMEPAGE:" prefix,
# which the host harness reads from the serial log.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=16m tmpfs /run

mkdir -p /run/samepage
name=$(sed -n 's/.*\bsp_name=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$name" ] && hostname "$name"

while read -r ko; do
	insmod "/lib/modules/$ko" || echo "SAMEPAGE: ERROR init: insmod $ko failed"
done < /lib/modules/load-order

# Every /dev/vdX the host attached should be there before READY; udev is absent, and
# devtmpfs creates the nodes as the driver probes.
want=$(sed -n 's/.*\bsp_disks=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$want" ] && [ "$want" -gt 0 ]; then
	i=0
	while [ "$(ls /dev/vd? 2>/dev/null | wc -l)" -lt "$want" ] && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i + 1))
	done
	[ "$(ls /dev/vd? 2>/dev/null | wc -l)" -ge "$want" ] || echo "SAMEPAGE: ERROR init: expected $want virtio disks, found: $(ls /dev/vd? 2>/dev/null | xargs)"
fi

# sp_root=/dev/vdX: a full root filesystem (the Debian seed image, scripts/qemu/debian/): mount
# it and hand over to its own init, which starts sp-fill and sp-agent itself (samepage-agent.service).
root=$(sed -n 's/.*\bsp_root=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$root" ]; then
	mkdir -p /newroot
	if mount -t ext4 -o rw "$root" /newroot; then
		umount /run /sys /proc
		mount --move /dev /newroot/dev
		exec switch_root /newroot /sbin/init
	fi
	echo "SAMEPAGE: ERROR init: cannot mount the root filesystem $root (ext4)"
	exec /bin/sp-agent --port /dev/ttyS1
fi

# The fill runs as a daemon so it keeps its memory while this shell goes on; it prints
# "SAMEPAGE: FILL {json}" or "SAMEPAGE: ERROR fill: ...".
/bin/sp-fill --cmdline --daemon --tag boot

exec /bin/sp-agent --port /dev/ttyS1 --ready
