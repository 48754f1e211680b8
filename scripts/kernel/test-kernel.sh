#!/usr/bin/env bash
# npm run test:kernel: the Linux 6.12 patch series in native/kernel/, end to end.
#
#  1. installs the build dependencies and linux-source-6.12 through apt (only what is missing);
#  2. keeps a git tree of /usr/src/linux-source-6.12.tar.xz in the cache, resets it to the pristine
#     source and applies the series with `git am` whenever the series changed;
#  3. runs scripts/checkpatch.pl --strict on every patch;
#  4. configures tinyconfig + scripts/kernel/config.fragment and builds bzImage (incrementally);
#  5. builds the static guest test program into an initramfs and boots it under QEMU TCG: the
#     lookahead and exclusive cache checks run in the guest and print SP RESULT lines;
#  6. runs test/hints.test.ts, which boots the guest again with page_hints= and reads the hint table
#     out of QEMU's guest RAM from the host with lib/hints.ts, and test/hints-placement.test.ts
#     (unsafe page_hints= holes refused, KASLR keeps the kernel out of the hole);
#  7. builds the same kernel with the series' options off;
#  8. prints a result table and `N passed, N failed`; exits non-zero on any failure.
#
# Environment: SAMEPAGE_KERNEL_CACHE (default /var/cache/samepage-kernel) holds the tree, both
# build directories, the artifacts and each run's logs. SAMEPAGE_KERNEL_JOBS (default nproc).
# The guest kernel has its own KSM: nothing here reads or writes the host's /sys/kernel/mm/ksm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SAMEPAGE_KERNEL_CACHE:-/var/cache/samepage-kernel}
jobs=${SAMEPAGE_KERNEL_JOBS:-$(nproc)}
series_dir=$repo/native/kernel
fragment=$here/config.fragment
tarball=/usr/src/linux-source-6.12.tar.xz
tree=$cache/linux-source-6.12
build_on=$cache/build-on
build_off=$cache/build-off
artifacts=$cache/artifacts
run_dir=$cache/runs/$(date -u +%Y%m%dT%H%M%SZ)
# Options the series adds; the "off" build turns all of them off.
series_options=(KSM_LOOKAHEAD KSM_EXCLUSIVE_CACHE PAGE_HINTS)

mkdir -p "$cache" "$artifacts" "$run_dir"
results=()   # "name|PASS or FAIL|detail"
qemu_pids=()

cleanup() {
	local pid
	for pid in "${qemu_pids[@]}"; do
		kill -9 "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[test:kernel %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
result() { results+=("$1|$2|$3"); }
die() {
	log "error: $*"
	result setup FAIL "$*"
	report
	exit 1
}

report() {
	local row name status detail passed=0 failed=0
	printf '\n%-34s %-6s %s\n' CHECK RESULT DETAIL
	printf '%-34s %-6s %s\n' ---------------------------------- ------ ------
	for row in "${results[@]}"; do
		IFS='|' read -r name status detail <<<"$row"
		printf '%-34s %-6s %s\n' "$name" "$status" "$detail"
		if [[ $status == PASS ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done
	printf '\nlogs: %s\n' "$run_dir"
	printf '%d passed, %d failed\n' "$passed" "$failed"
	[[ $failed -eq 0 ]]
}

# --- 1. packages ---------------------------------------------------------------------------------
# linux-source-6.12 is the tree under test; the rest builds it (flex bison bc libelf-dev libssl-dev
# for Kbuild, cpio/xz for the source and initramfs, perl, python3-ply and python3-git for checkpatch and its
# SPDX check, git for git am), builds the static guest
# program (libc6-dev has libc.a) and runs it (qemu-system-x86).
packages=(linux-source-6.12 build-essential libc6-dev flex bison bc libelf-dev libssl-dev cpio xz-utils
	gzip perl python3 python3-ply python3-git git qemu-system-x86)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >"$run_dir/apt.log" 2>&1 || die "apt-get update failed: see $run_dir/apt.log"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$run_dir/apt.log" 2>&1 ||
		die "apt-get install ${missing[*]} failed: see $run_dir/apt.log"
fi
[[ -f $tarball ]] || die "$tarball is missing although linux-source-6.12 is installed: reinstall it"

# --- 2. source tree and series -------------------------------------------------------------------
git_() { git -C "$tree" -c user.name=samepage -c user.email=samepage@localhost -c advice.detachedHead=false "$@"; }

source_id=$(stat -c '%s %Y' "$tarball")
if [[ ! -d $tree/.git || "$(cat "$cache/source.stamp" 2>/dev/null)" != "$source_id" ]]; then
	log "extracting $tarball into $tree"
	rm -rf "$tree" "$build_on" "$build_off" "$cache/series.applied"
	tar -xf "$tarball" -C "$cache"
	[[ -d $tree ]] || die "$tarball did not unpack to $tree"
	# Debian's top-level .gitignore ignores everything ("/*"): add with -f.
	git_ init -q
	git_ add -A -f .
	git_ commit -q -m "linux-source-6.12 ($(make -s -C "$tree" kernelversion))"
	git_ tag -f samepage-base >/dev/null
	echo "$source_id" >"$cache/source.stamp"
fi
kernel_version=$(make -s -C "$tree" kernelversion)

[[ -f $series_dir/series ]] || die "$series_dir/series is missing"
mapfile -t patches < <(grep -v '^[[:space:]]*\(#\|$\)' "$series_dir/series")
((${#patches[@]})) || die "$series_dir/series lists no patches"
for p in "${patches[@]}"; do
	[[ -f $series_dir/$p ]] || die "$series_dir/series lists $p, which does not exist"
done
series_id=$( (cat "$series_dir/series"; for p in "${patches[@]}"; do cat "$series_dir/$p"; done) | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$cache/series.applied" 2>/dev/null)" != "$series_id" ]]; then
	log "applying ${#patches[@]} patches to a pristine $kernel_version tree"
	rm -f "$cache/series.applied"
	git_ am --abort >/dev/null 2>&1 || true
	# Only files that differ from the base are rewritten, so the build stays incremental.
	git_ checkout -q -f samepage-base
	git_ clean -q -f -d -x
	if git_ am -q "${patches[@]/#/$series_dir/}" >"$run_dir/git-am.log" 2>&1; then
		echo "$series_id" >"$cache/series.applied"
		result series_applies PASS "git am of ${#patches[@]} patches onto $kernel_version"
	else
		git_ am --abort >/dev/null 2>&1 || true
		die "the series does not apply to $kernel_version: see $run_dir/git-am.log"
	fi
else
	result series_applies PASS "${#patches[@]} patches on $kernel_version (applied in an earlier run, unchanged)"
fi

# --- 3. checkpatch -------------------------------------------------------------------------------
for p in "${patches[@]}"; do
	out=$run_dir/checkpatch-${p%.patch}.log
	# Debian's python3 first: checkpatch's SPDX check needs its python3-ply, which a python3 from
	# pyenv or /usr/local would not see (the check then only prints a traceback).
	if (cd "$tree" && PATH=/usr/bin:/bin:$PATH perl scripts/checkpatch.pl --strict --color=never "$series_dir/$p") >"$out" 2>&1 &&
		! grep -q Traceback "$out"; then
		result "checkpatch ${p%%-*}" PASS "$(grep -m1 '^total:' "$out")"
	else
		result "checkpatch ${p%%-*}" FAIL "$(grep -m1 '^total:' "$out" || echo 'did not run') (see $out)"
	fi
done

# --- 4. configure and build ----------------------------------------------------------------------
# configure DIR OFF: tinyconfig + the fragment (+ the series' options off when OFF=1), then check
# that olddefconfig kept every option asked for.
configure() {
	local dir=$1 off=$2 opt want stamp
	stamp=$( (cat "$fragment"; echo "off=$off") | sha256sum | cut -d' ' -f1)
	[[ -f $dir/.config && "$(cat "$dir/.config.samepage" 2>/dev/null)" == "$stamp" ]] && return 0
	mkdir -p "$dir"
	make -s -C "$tree" O="$dir" tinyconfig >"$run_dir/config-$(basename "$dir").log" 2>&1
	while read -r opt; do
		"$tree/scripts/config" --file "$dir/.config" -e "${opt#CONFIG_}"
	done < <(grep -o '^CONFIG_[A-Z0-9_]*=y' "$fragment" | sed 's/=y$//')
	if [[ $off == 1 ]]; then
		for opt in "${series_options[@]}"; do "$tree/scripts/config" --file "$dir/.config" -d "$opt"; done
	fi
	make -s -C "$tree" O="$dir" olddefconfig >>"$run_dir/config-$(basename "$dir").log" 2>&1
	while read -r want; do
		if [[ $off == 1 && " ${series_options[*]} " == *" ${want#CONFIG_} "* ]]; then
			grep -q "^$want=y" "$dir/.config" && die "$want is still set in the options-off config"
			continue
		fi
		grep -q "^$want=y" "$dir/.config" || die "$want did not survive olddefconfig in $dir: a dependency is missing from $fragment"
	done < <(grep -o '^CONFIG_[A-Z0-9_]*=y' "$fragment" | sed 's/=y$//')
	echo "$stamp" >"$dir/.config.samepage"
}

build() {
	local dir=$1 name=$2 t0
	t0=$(date +%s)
	log "building bzImage in $dir ($jobs jobs)"
	if make -s -C "$tree" O="$dir" -j"$jobs" bzImage >"$run_dir/build-$name.log" 2>&1; then
		result "build $name" PASS "bzImage $(stat -c %s "$dir/arch/x86/boot/bzImage") bytes in $(($(date +%s) - t0)) s"
		return 0
	fi
	result "build $name" FAIL "see $run_dir/build-$name.log"
	return 1
}

configure "$build_on" 0
build "$build_on" "series-on" || { report; exit 1; }
cp "$build_on/arch/x86/boot/bzImage" "$artifacts/bzImage"

# --- 5. guest program, initramfs, checks in the guest --------------------------------------------
# Every scripts/kernel/guest/*.c goes into the one static /init (sp_common.h lists the areas).
gcc -O2 -static -Wall -Wextra -Werror -Wno-format-truncation -o "$artifacts/sp_guest" "$here"/guest/*.c \
	>"$run_dir/guest-cc.log" 2>&1 || die "building the guest program failed: see $run_dir/guest-cc.log"
cat >"$artifacts/initramfs.list" <<EOF
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
dir /proc 755 0 0
dir /sys 755 0 0
file /init $artifacts/sp_guest 755 0 0
EOF
"$build_on/usr/gen_init_cpio" "$artifacts/initramfs.list" | gzip -1 >"$artifacts/initramfs.cpio.gz"

serial=$run_dir/serial-checks.log
log "booting the checks guest (QEMU TCG)"
# -icount shift=0: guest time advances 1 ns per executed guest instruction, so ksmd's run time in
# the guest measures its work exactly and does not depend on what else loads this host.
# mem-merge=off keeps the guest's RAM out of the host's KSM (the guest kernel has its own).
qemu-system-x86_64 -accel tcg -icount shift=0 -machine mem-merge=off -m 512 -smp 1 -nodefaults -vga none -display none -no-reboot \
	-kernel "$artifacts/bzImage" -initrd "$artifacts/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 quiet brd.rd_nr=2 brd.rd_size=16384" \
	-serial "file:$serial" -monitor none >"$run_dir/qemu-checks.log" 2>&1 &
qemu_pids+=($!)
deadline=$(($(date +%s) + 600))
while kill -0 "${qemu_pids[-1]}" 2>/dev/null; do
	if (($(date +%s) > deadline)); then
		kill -9 "${qemu_pids[-1]}" 2>/dev/null || true
		result guest_checks FAIL "no SP DONE within 600 s: see $serial"
		break
	fi
	sleep 0.5
done
wait "${qemu_pids[-1]}" 2>/dev/null || true
grep -a '^SP MEASURE' "$serial" | tr -d '\r' | sed 's/^SP MEASURE /measure: /' >&2 || true
while IFS= read -r line; do
	line=${line%$'\r'}
	read -r _ _ name status detail <<<"$line"
	result "$name" "$status" "$detail"
done < <(grep -a '^SP RESULT ' "$serial")
grep -aq '^SP DONE' "$serial" || result guest_checks FAIL "the guest program did not finish: see $serial"

# --- 6. hint table, read from the host -----------------------------------------------------------
log "hint table check (test/hints.test.ts)"
if (cd "$repo" && npx tsc -p tsconfig.json) >"$run_dir/tsc.log" 2>&1; then
	(cd "$repo" && SAMEPAGE_KERNEL_ARTIFACTS=$artifacts npx ava --tap dist/test/hints.test.js dist/test/hints-placement.test.js) >"$run_dir/hints-ava.tap" 2>&1 || true
	n=0
	while IFS= read -r line; do
		n=$((n + 1))
		if [[ $line == "ok "* && $line != *"# SKIP"* ]]; then
			result "hints: ${line#ok [0-9]* - }" PASS "test/hints.test.ts"
		else
			result "hints: ${line#not ok [0-9]* - }" FAIL "see $run_dir/hints-ava.tap"
		fi
	done < <(grep -E '^(not )?ok [0-9]+ ' "$run_dir/hints-ava.tap")
	((n)) || result hints FAIL "ava ran no test: see $run_dir/hints-ava.tap"
else
	result hints FAIL "TypeScript build failed: see $run_dir/tsc.log"
fi

# --- 7. the same kernel with the series' options off --------------------------------------------
configure "$build_off" 1
build "$build_off" "options-off" || true

report
