#!/usr/bin/env bash
# npm run bench:kernel-lookahead: patch 0001 (lookahead) measured in the patched test kernel.
#
# Boots the bzImage that `npm run test:kernel` built (in $SAMEPAGE_KERNEL_CACHE/artifacts) under QEMU
# TCG with -icount shift=0 (guest time = executed instructions, so ksmd's CPU time in the guest
# does not depend on the host's load) and 2 vCPUs, with the guest program in
# sp_mode=lookahead-bench (scripts/kernel/guest/sp_lookahead.c), which runs, ROUNDS times,
# lookahead off then on at the same pages_to_scan/sleep_millisecs:
#   - settled: 3 processes of 4096 pages in runs shared by all of them (random pages, and pages
#     whose first 3/4 are zero), nothing written while ksmd runs; 4 full scans each;
#   - vm: 2 "guests" of 6144 pages each (shared boot runs, a page cache that reads files the two
#     share, a heap that is rewritten), SECS seconds each, pages_shared/pages_sharing sampled every
#     100 ms and averaged.
# It prints a markdown table (the one in native/kernel/README.md comes from here) and, last, one
# JSON line with the on/off ratios. Exit 1 if the guest failed, a kernel splat appeared, or
# pages_shared differed on settled memory.
#
# Usage: measure-lookahead.sh [--secs N] [--rounds N] [--pages-to-scan N] [--sleep-ms N]
#        [--kernel BZIMAGE]
#        (defaults 30, 2, 2000, 4). SAMEPAGE_KERNEL_CACHE as in test-kernel.sh. --kernel boots another
#        bzImage built from the same series (e.g. without the test config's debug options, which
#        make every lock and page-table walk dearer) instead of test:kernel's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SAMEPAGE_KERNEL_CACHE:-/var/cache/samepage-kernel}
artifacts=$cache/artifacts
secs=30 rounds=2 pages_to_scan=2000 sleep_ms=4 kernel=

die() {
	echo "measure-lookahead: $*" >&2
	exit 2
}
uint() { [[ $2 =~ ^[1-9][0-9]{0,5}$ ]] || die "$1 needs a whole number from 1 to 999999, got '$2'"; }
while (($#)); do
	case $1 in
	--secs) uint "$1" "${2-}"; secs=$2; shift 2 ;;
	--rounds) uint "$1" "${2-}"; rounds=$2; shift 2 ;;
	--pages-to-scan) uint "$1" "${2-}"; pages_to_scan=$2; shift 2 ;;
	--sleep-ms) uint "$1" "${2-}"; sleep_ms=$2; shift 2 ;;
	--kernel) [[ -f ${2-} ]] || die "--kernel needs a bzImage file, got '${2-}'"; kernel=$2; shift 2 ;;
	-h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done

# The kernel must be the one of the current series: test-kernel.sh records the series it applied.
series_dir=$repo/native/kernel
mapfile -t patches < <(grep -v '^[[:space:]]*\(#\|$\)' "$series_dir/series")
series_id=$( (cat "$series_dir/series"; for p in "${patches[@]}"; do cat "$series_dir/$p"; done) | sha256sum | cut -d' ' -f1)
[[ -f $artifacts/bzImage && -x $cache/build-on/usr/gen_init_cpio ]] ||
	die "no test kernel in $cache: run 'npm run test:kernel' first (same SAMEPAGE_KERNEL_CACHE)"
[[ -n $kernel || "$(cat "$cache/series.applied" 2>/dev/null)" == "$series_id" ]] ||
	die "the kernel in $cache was built from another version of native/kernel: run 'npm run test:kernel' first"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: run 'npm run test:kernel' first (it installs it)"

work=$(mktemp -d /tmp/samepage-lookahead.XXXXXX)
qemu_pid=
cleanup() {
	[[ -n $qemu_pid ]] && kill -9 "$qemu_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -static -Wall -Wextra -Werror -Wno-format-truncation -o "$work/sp_guest" "$here"/guest/*.c ||
	die "building the guest program failed"
cat >"$work/initramfs.list" <<EOF
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
dir /proc 755 0 0
dir /sys 755 0 0
file /init $work/sp_guest 755 0 0
EOF
"$cache/build-on/usr/gen_init_cpio" "$work/initramfs.list" | gzip -1 >"$work/initramfs.cpio.gz"

mkdir -p "$cache/runs"
serial=$cache/runs/lookahead-bench-$(date -u +%Y%m%dT%H%M%SZ).log
echo "measure-lookahead: booting the guest (${rounds} rounds, ${secs} s per vm run); serial log $serial" >&2
t0=$(date +%s)
qemu-system-x86_64 -accel tcg -icount shift=0 -machine mem-merge=off -m 512 -smp 2 -nodefaults \
	-vga none -display none -no-reboot -kernel "${kernel:-$artifacts/bzImage}" -initrd "$work/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 sp_mode=lookahead-bench sp_la_secs=$secs sp_la_rounds=$rounds sp_la_pages_to_scan=$pages_to_scan sp_la_sleep_ms=$sleep_ms" \
	-serial "file:$serial" -monitor none >"$work/qemu.log" 2>&1 &
qemu_pid=$!
# Guest time runs slower than wall time under TCG: allow 20x, plus the settled runs and boot.
limit=$((600 + rounds * (4 * secs * 20 + 300)))
while kill -0 "$qemu_pid" 2>/dev/null; do
	if (($(date +%s) - t0 > limit)); then
		kill -9 "$qemu_pid" 2>/dev/null || true
		die "the guest did not finish within $limit s: see $serial"
	fi
	sleep 1
done
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
echo "measure-lookahead: guest finished in $(($(date +%s) - t0)) s" >&2

status=0
if [[ -x $here/scan-splats.sh ]] && ! "$here/scan-splats.sh" "$serial" >&2; then
	echo "measure-lookahead: kernel reports in the serial log (above)" >&2
	status=1
fi
grep -aq '^SP DONE' "$serial" || { echo "measure-lookahead: the guest did not finish: see $serial" >&2; status=1; }
if grep -a '^SP RESULT [^ ]* FAIL' "$serial" >&2; then status=1; fi

tr -d '\r' <"$serial" | grep -a '^SP MEASURE ' | python3 -c '
import json, sys
runs = []
bench = {}
for line in sys.stdin:
    kv = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
    if line.split()[2] == "bench":
        bench = {k: int(v) for k, v in kv.items()}
        continue
    runs.append({k: (v if k == "workload" else int(v)) for k, v in kv.items()})
if not runs:
    print("measure-lookahead: no SP MEASURE lines", file=sys.stderr)
    sys.exit(1)

def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)

def ratio(a, b):
    return round(a / b, 4) if b else None

out = {"bench": "kernel-lookahead", "settings": bench, "rounds": len([r for r in runs if r["workload"] == "vm"]) // 2}
ok = True
print("| workload | lookahead | full scans | ksmd CPU per full scan | avg pages_shared | avg pages_sharing | pages_shared at end | lookahead hits / misses |")
print("|---|---|---|---|---|---|---|---|")
for w in ("random", "sparse", "vm"):
    rows = {la: [r for r in runs if r["workload"] == w and r["lookahead"] == la] for la in (0, 1)}
    if not rows[0] or not rows[1]:
        continue
    res = {}
    for la in (0, 1):
        rr = rows[la]
        cpu = mean(rr, "cpu_ns_per_full_scan") / 1e6
        if w == "vm":
            avg_sh, avg_sg = mean(rr, "avg_pages_shared"), mean(rr, "avg_pages_sharing")
        else:
            avg_sh, avg_sg = mean(rr, "pages_shared"), mean(rr, "pages_sharing")
        res[la] = dict(cpu=cpu, scans=mean(rr, "full_scans"), avg_sh=avg_sh, avg_sg=avg_sg,
                       end=mean(rr, "pages_shared"), hits=mean(rr, "lookahead_hits"),
                       misses=mean(rr, "lookahead_misses"), total_cpu=mean(rr, "ksmd_cpu_ns") / 1e6)
        avg = "%.0f" % avg_sh if w == "vm" else "(settled) %.0f" % avg_sh
        print("| %s | %s | %.1f | %.1f ms | %s | %.0f | %.0f | %.0f / %.0f |" % (
            w, "on" if la else "off", res[la]["scans"], cpu, avg, avg_sg, res[la]["end"],
            res[la]["hits"], res[la]["misses"]))
    entry = {
        "cpu_per_full_scan_on_off": ratio(res[1]["cpu"], res[0]["cpu"]),
        "ksmd_cpu_on_off": ratio(res[1]["total_cpu"], res[0]["total_cpu"]),
        "full_scans_on_off": ratio(res[1]["scans"], res[0]["scans"]),
    }
    if w == "vm":
        entry["avg_pages_shared_on_off"] = ratio(res[1]["avg_sh"], res[0]["avg_sh"])
        entry["avg_pages_sharing_on_off"] = ratio(res[1]["avg_sg"], res[0]["avg_sg"])
        entry["avg_pages_shared_off"] = round(res[0]["avg_sh"], 1)
        entry["avg_pages_shared_on"] = round(res[1]["avg_sh"], 1)
    else:
        # Settled memory: every run, on or off, must end with the same counts.
        same = len({(r["pages_shared"], r["pages_sharing"]) for r in rows[0] + rows[1]}) == 1
        entry["pages_shared_equal"] = same
        ok &= same
    out[w] = entry
print(json.dumps(out, separators=(",", ":")))
sys.exit(0 if ok else 1)
' || status=1
exit $status
