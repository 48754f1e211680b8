#!/usr/bin/env bash
# npm run test:kernel: the Linux 6.12 patch series in native/kernel/, end to end.
#
#  1. installs the build dependencies and linux-source-6.12 through apt (only what is missing);
#  2. keeps a git tree of /usr/src/linux-source-6.12.tar.xz in the cache, resets it to the pristine
#     source and applies the series with `git am` whenever the series changed;
#  3. runs scripts/checkpatch.pl --strict on every patch;
#  4. configures tinyconfig + scripts/kernel/config.fragment and builds bzImage (incrementally);
#  5. builds the static guest test program (every scripts/kernel/guest/*.c) and upstream's KSM
#     selftests (tools/testing/selftests/mm ksm_tests, ksm_functional_tests of the same tree,
#     static, against its `make headers_install` headers) into an initramfs;
#  6. boots it under QEMU TCG (2 vCPUs, -icount) twice: sp_mode=checks runs the lookahead,
#     exclusive cache and KSM hint (0004) checks; sp_mode=selftests lists KSM's sysfs files, runs
#     a fixed merge workload with the knobs at 0 and the upstream selftests with the knobs at 0
#     and then at 1;
#  7. runs test/hints.test.ts, which boots the guest again with page_hints= and reads the hint table
#     out of QEMU's guest RAM from the host with lib/hints.ts, and test/hints-placement.test.ts
#     (unsafe page_hints= holes refused, KASLR keeps the kernel out of the hole); the hint test
#     also dumps 128 MiB of its guest's RAM, and a boot (sp_mode=ksm-hints-guest) has ksmd scan
#     that dump with the guest's own hint table registered (patch 0004 on a real guest's hints);
#  8. builds the same kernel with the series' options off and boots it with sp_mode=selftests;
#  8b. builds the options-on kernel with KASAN too (config-kasan.fragment) and boots the checks on it;
#  9. checks that the options-off kernel has 6.12's KSM sysfs files, merges the fixed workload as
#     the options-on kernel does at knobs 0 and gets the same selftest results;
# and prints a result table, `N skipped` and `N passed, N failed`; exits non-zero on any failure.
# Every boot's serial log is scanned by scan-splats.sh (row "no_splat <boot>"): the kernel is
# built with lockdep, DEBUG_VM, DEBUG_LIST (config.fragment) and any kernel report fails the run.
#
# Environment: SAMEPAGE_KERNEL_CACHE (default /var/cache/samepage-kernel) holds the tree, the three
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
build_kasan=$cache/build-kasan
artifacts=$cache/artifacts
run_dir=$cache/runs/$(date -u +%Y%m%dT%H%M%SZ)
# Options the series adds; the "off" build turns all of them off.
series_options=(KSM_LOOKAHEAD KSM_EXCLUSIVE_CACHE PAGE_HINTS KSM_PAGE_HINTS)

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
	local row name status detail passed=0 failed=0 skipped=0
	printf '\n%-44s %-6s %s\n' CHECK RESULT DETAIL
	printf '%-44s %-6s %s\n' -------------------------------------------- ------ ------
	for row in "${results[@]}"; do
		IFS='|' read -r name status detail <<<"$row"
		printf '%-44s %-6s %s\n' "$name" "$status" "$detail"
		case $status in
		PASS) passed=$((passed + 1)) ;;
		SKIP) skipped=$((skipped + 1)) ;;	# a selftest that could not run here: the reason is shown
		*) failed=$((failed + 1)) ;;
		esac
	done
	# Upstream's selftests per kernel state: rows ksft/<state>/... (sp_selftests.c).
	printf '\n%-44s %6s %6s %6s\n' 'UPSTREAM KSM SELFTESTS' PASS SKIP FAIL
	local state label p k f
	for state in off knobs0 knobs1; do
		case $state in
		off) label='options-off kernel' ;;
		knobs0) label='series kernel, lookahead=0 exclusive_cache=0' ;;
		knobs1) label='series kernel, lookahead=1 exclusive_cache=1' ;;
		esac
		p=0 k=0 f=0
		for row in "${results[@]}"; do
			IFS='|' read -r name status detail <<<"$row"
			[[ $name == ksft/$state/* ]] || continue
			case $status in PASS) p=$((p + 1)) ;; SKIP) k=$((k + 1)) ;; *) f=$((f + 1)) ;; esac
		done
		printf '%-44s %6d %6d %6d\n' "$label" "$p" "$k" "$f"
	done
	printf '\nlogs: %s\n' "$run_dir"
	printf '%d skipped\n' "$skipped"
	printf '%d passed, %d failed\n' "$passed" "$failed"
	[[ $failed -eq 0 ]]
}

# --- 1. packages ---------------------------------------------------------------------------------
# linux-source-6.12 is the tree under test; the rest builds it (flex bison bc libelf-dev libssl-dev
# for Kbuild, cpio/xz for the source and initramfs, perl, python3-ply and python3-git for checkpatch and its
# SPDX check, git for git am), builds the static guest
# program (libc6-dev has libc.a) and runs it (qemu-system-x86); upstream's ksm_tests links libnuma
# (libnuma-dev has libnuma.a) and `make headers_install` copies with rsync; erofs-utils makes the
# EROFS image of the large folio check.
packages=(linux-source-6.12 build-essential libc6-dev flex bison bc libelf-dev libssl-dev cpio xz-utils
	gzip perl python3 python3-ply python3-git git qemu-system-x86 libnuma-dev rsync erofs-utils)
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
	rm -rf "$tree" "$build_on" "$build_off" "$build_kasan" "$cache/series.applied"
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
# configure DIR OFF [EXTRA]: tinyconfig + the fragment (+ the series' options off when OFF=1, + the
# fragment EXTRA, whose "# CONFIG_X is not set" lines turn options off), then check that
# olddefconfig kept every option asked for.
configure() {
	local dir=$1 off=$2 extra=${3:-} opt stamp
	local fragments=("$fragment") enable disable
	[[ -n $extra ]] && fragments+=("$extra")
	stamp=$( (cat "${fragments[@]}"; echo "off=$off") | sha256sum | cut -d' ' -f1)
	[[ -f $dir/.config && "$(cat "$dir/.config.samepage" 2>/dev/null)" == "$stamp" ]] && return 0
	# The options the fragments turn on and off, read once.
	mapfile -t enable < <(cat "${fragments[@]}" | sed -nE 's/^(CONFIG_[A-Z0-9_]+)=y$/\1/p')
	mapfile -t disable < <(cat "${fragments[@]}" | sed -nE 's/^# (CONFIG_[A-Z0-9_]+) is not set$/\1/p')
	mkdir -p "$dir"
	make -s -C "$tree" O="$dir" tinyconfig >"$run_dir/config-$(basename "$dir").log" 2>&1
	for opt in "${enable[@]}"; do "$tree/scripts/config" --file "$dir/.config" -e "${opt#CONFIG_}"; done
	for opt in "${disable[@]}"; do "$tree/scripts/config" --file "$dir/.config" -d "${opt#CONFIG_}"; done
	if [[ $off == 1 ]]; then
		for opt in "${series_options[@]}"; do "$tree/scripts/config" --file "$dir/.config" -d "$opt"; done
	fi
	make -s -C "$tree" O="$dir" olddefconfig >>"$run_dir/config-$(basename "$dir").log" 2>&1
	for opt in "${enable[@]}"; do
		if [[ $off == 1 && " ${series_options[*]} " == *" ${opt#CONFIG_} "* ]]; then
			grep -q "^$opt=y" "$dir/.config" && die "$opt is still set in the options-off config"
			continue
		fi
		grep -q "^$opt=y" "$dir/.config" || die "$opt did not survive olddefconfig in $dir: a dependency is missing from ${fragments[*]}"
	done
	for opt in "${disable[@]}"; do
		grep -q "^$opt=y" "$dir/.config" && die "$opt is still set in $dir although ${fragments[*]} turns it off"
	done
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

# --- 5. guest program, upstream KSM selftests, initramfs -----------------------------------------
# Every scripts/kernel/guest/*.c goes into the one static /init (sp_common.h lists the areas).
gcc -O2 -static -Wall -Wextra -Werror -Wno-format-truncation -o "$artifacts/sp_guest" "$here"/guest/*.c \
	>"$run_dir/guest-cc.log" 2>&1 || die "building the guest program failed: see $run_dir/guest-cc.log"
# The large folio check's file (sp_large_folios.c writes it here), in an uncompressed EROFS image the
# guest mounts file-backed: EROFS caches files in large folios.
rm -rf "$artifacts/lf" "$artifacts/lf.erofs"
mkdir -p "$artifacts/lf"
"$artifacts/sp_guest" --large-folio-file "$artifacts/lf/big" >"$run_dir/erofs.log" 2>&1 &&
	mkfs.erofs "$artifacts/lf.erofs" "$artifacts/lf" >>"$run_dir/erofs.log" 2>&1 ||
	die "making the EROFS image failed: see $run_dir/erofs.log"

# Upstream's KSM selftests, from the same (patched) tree with its own Makefile, linked static
# against the tree's UAPI headers as `make headers_install` installs them.
selftests=$artifacts/selftests
rm -rf "$artifacts/headers" "$selftests"
mkdir -p "$selftests"
# One fix is applied for the build and taken back after it: 6.12's test_prctl_fork_exec passes
# execv() an argv without its NULL terminator, so in a static binary the exec fails, the forked child
# returns into the test list and runs the remaining tests, and the parent reports the child's
# exit status 0 as a pass; upstream fixed it later the same way (argv ends with NULL).
ksm_ft=tools/testing/selftests/mm/ksm_functional_tests.c
ksm_ft_fix='s/{ prg_name, FORK_EXEC_CHILD_PRG_NAME }/{ prg_name, FORK_EXEC_CHILD_PRG_NAME, NULL }/'
if ! sed -i "$ksm_ft_fix" "$tree/$ksm_ft" || ! grep -q 'FORK_EXEC_CHILD_PRG_NAME, NULL }' "$tree/$ksm_ft"; then
	result build_ksm_selftests FAIL "the execv argv fix did not apply to $ksm_ft"
elif make -s -C "$tree" O="$cache/build-headers" headers_install INSTALL_HDR_PATH="$artifacts/headers" \
	>"$run_dir/selftests-build.log" 2>&1 &&
	make -C "$tree/tools/testing/selftests/mm" OUTPUT="$selftests" USERLDFLAGS=-static \
		KHDR_INCLUDES="-isystem $artifacts/headers/include" "$selftests/ksm_tests" "$selftests/ksm_functional_tests" \
		>>"$run_dir/selftests-build.log" 2>&1; then
	result build_ksm_selftests PASS "ksm_tests, ksm_functional_tests of $kernel_version, static (fork_exec argv NULL-terminated)"
else
	result build_ksm_selftests FAIL "see $run_dir/selftests-build.log"
fi
git_ checkout -q -- "$ksm_ft"

# build_core_test ROW NAME TEST SUPPORT...: one of native/core's C tests with the C engine, static, into
# the initramfs as /selftests/NAME; a ROW of its own says whether it built.
core=$repo/native/core
build_core_test() {
	local row=$1 name=$2 test=$3
	shift 3
	if gcc -O2 -static -pthread -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -I"$core/include" \
		-I"$core/src" -I"$core/test" -o "$selftests/$name" "$core"/src/*.c "$core/test/$test.c" \
		"${@/#/$core/test/}" >"$run_dir/$name-cc.log" 2>&1; then
		result "$row" PASS "native/core's $test, static, for the guest"
	else
		result "$row" FAIL "see $run_dir/$name-cc.log"
	fi
}
# The kernel-oracle test, run by the guest beside upstream's selftests: the engine against 6.12's
# ksmd, not only this host's.
build_core_test build_kernel_oracle samepage_kernel_oracle test_kernel_oracle check.c oracle.c ksm_sysfs.c
# The golden tests, run by the checks boot: QEMU's default CPU has no AVX2, so they show the hash
# there picks a loop the CPU runs and gives the same fixed values.
build_core_test build_engine_golden samepage_golden test_golden check.c

# The engine keeps the kernel's stable tree shape (native/core/src/stable.c: which chains a search
# passes) only if its red-black tree balances as lib/rbtree.c does: the same random inserts and
# erasures on both, shapes and colours compared, on the host, against this tree's tools/lib/rbtree.c.
rbtree_out=
if gcc -O1 -I"$tree/tools/include" -I"$core/src" -o "$run_dir/rbtree_vs_linux" "$core/test/rbtree_vs_linux.c" \
	"$tree/tools/lib/rbtree.c" "$core/src/rbtree.c" >"$run_dir/rbtree-cc.log" 2>&1 &&
	rbtree_out=$("$run_dir/rbtree_vs_linux" 2>&1); then
	result rbtree_shape_as_linux PASS "$rbtree_out"
else
	result rbtree_shape_as_linux FAIL "${rbtree_out:-see $run_dir/rbtree-cc.log}"
fi

{
	printf '%s\n' 'dir /dev 755 0 0' 'nod /dev/console 600 0 0 c 5 1' 'dir /proc 755 0 0' 'dir /sys 755 0 0' \
		"file /init $artifacts/sp_guest 755 0 0" 'dir /selftests 755 0 0' \
		'dir /run 755 0 0' 'dir /run/lock 755 0 0' \
		"file /lf.erofs $artifacts/lf.erofs 644 0 0"	# the oracle test's KSM settings lock; the large folio check's image
	for f in ksm_tests ksm_functional_tests samepage_kernel_oracle samepage_golden; do
		[[ -f $selftests/$f ]] && echo "file /selftests/$f $selftests/$f 755 0 0"
	done
} >"$artifacts/initramfs.list"
"$build_on/usr/gen_init_cpio" "$artifacts/initramfs.list" | gzip -1 >"$artifacts/initramfs.cpio.gz"

# scan_serial NAME LOG...: a no_splat row for one boot (scan-splats.sh: any kernel report fails).
scan_serial() {
	local name=$1 out rc
	shift
	rc=0
	out=$(bash "$here/scan-splats.sh" "$@") || rc=$?
	if ((rc == 0)); then
		result "no_splat $name" PASS "no kernel report in $(cat "$@" | wc -l) serial lines"
	elif ((rc == 1)); then
		result "no_splat $name" FAIL "$(grep -c '' <<<"$out") report lines, first: $(head -1 <<<"$out" | cut -c1-160)"
	else
		result "no_splat $name" FAIL "scan-splats.sh could not read $*"
	fi
}

# boot NAME BZIMAGE LIMIT_S ICOUNT APPEND [INITRAMFS] [PREFIX]: one guest under QEMU TCG with 2 vCPUs; its
# serial log is serial-NAME.log, its SP RESULT lines become rows (named PREFIX<row>), and the log is
# scanned for kernel reports.
# ICOUNT=1 adds -icount shift=0: guest time advances 1 ns per executed guest instruction (QEMU
# then runs both vCPUs round-robin on one host thread and counts the instructions of both), so
# ksmd's run time in the guest measures work and does not depend on what else loads this host.
# Only the checks boot, which measures, uses it: under -icount with 2 vCPUs, QEMU 7.2 let a
# vCPU's timers go unserved for minutes while the other vCPU busy-polled sysfs (as ksm_tests does),
# which showed as RCU stalls and selftest timeouts on the options-off state as well; without
# -icount (MTTCG, a host thread per vCPU) the same boot ran clean in 98 s.
# mem-merge=off keeps the guest's RAM out of the host's KSM (the guest kernel has its own).
boot() {
	local name=$1 kernel=$2 limit=$3 icount=$4 append=$5 initramfs=${6:-$artifacts/initramfs.cpio.gz} prefix=${7:-}
	local serial=$run_dir/serial-$1.log t0 pid line
	local accel=(-accel tcg)
	# Without -icount, the guest's CPU time depends on what else loads this host: the guest
	# programs are told not to judge by it (sp_timing=off: such rows are SKIPs with their figures).
	if [[ $icount == 1 ]]; then
		accel+=(-icount shift=0)
	else
		append+=" sp_timing=off"
	fi
	t0=$(date +%s)
	log "booting $name (QEMU TCG, 2 vCPUs, at most $limit s)"
	qemu-system-x86_64 "${accel[@]}" -machine mem-merge=off -m 512 -smp 2 -nodefaults \
		-vga none -display none -no-reboot -kernel "$kernel" -initrd "$initramfs" \
		-append "console=ttyS0 panic=-1 brd.rd_nr=2 brd.rd_size=16384 $append" \
		-serial "file:$serial" -monitor none >"$run_dir/qemu-$name.log" 2>&1 &
	pid=$!
	qemu_pids+=("$pid")
	while kill -0 "$pid" 2>/dev/null; do
		if (($(date +%s) > t0 + limit)); then
			kill -9 "$pid" 2>/dev/null || true
			result "boot $name" FAIL "no SP DONE within $limit s: see $serial"
			break
		fi
		sleep 0.5
	done
	wait "$pid" 2>/dev/null || true
	grep -a '^SP MEASURE' "$serial" | tr -d '\r' | sed "s/^SP MEASURE /measure $name: /" >&2 || true
	while IFS= read -r line; do
		line=${line%$'\r'}
		read -r _ _ rname status detail <<<"$line"
		result "$prefix$rname" "$status" "$detail"
	done < <(grep -a '^SP RESULT ' "$serial")
	if grep -aq '^SP DONE' "$serial"; then
		result "boot $name" PASS "SP DONE after $(($(date +%s) - t0)) s"
	else
		result "boot $name" FAIL "the guest program did not finish: see $serial"
	fi
	scan_serial "$name" "$serial"
}

# --- 6. checks and upstream selftests on the options-on kernel -----------------------------------
# null_blk: /dev/nullb0, memory-backed, every request completed 4 s after it is queued (the
# exclusive cache's writeback check); its partition scan at boot costs a few of those 4 s.
nullb_params="null_blk.nr_devices=1 null_blk.gb=1 null_blk.memory_backed=1 null_blk.irqmode=2 null_blk.completion_nsec=4000000000"
boot checks "$artifacts/bzImage" 900 1 "sp_mode=checks $nullb_params"
# numa=fake=2: two NUMA nodes for ksm_tests -N (merge_across_nodes 0 and 1).
boot selftests-on "$artifacts/bzImage" 900 0 "sp_mode=selftests numa=fake=2"

# --- 7. hint table, read from the host -----------------------------------------------------------
log "hint table check (test/hints.test.ts)"
hints_serial=$run_dir/hints-serial
mkdir -p "$hints_serial"
if (cd "$repo" && npx tsc -p tsconfig.json) >"$run_dir/tsc.log" 2>&1; then
	rm -f "$artifacts/guest-ram.bin"
	(cd "$repo" && SAMEPAGE_KERNEL_ARTIFACTS=$artifacts SAMEPAGE_KERNEL_SERIAL_DIR=$hints_serial \
		SAMEPAGE_KERNEL_RAM_DUMP=$artifacts/guest-ram.bin npx ava --tap dist/test/hints.test.js dist/test/hints-placement.test.js) >"$run_dir/hints-ava.tap" 2>&1 || true
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
# test/hints.test.ts boots its own guests and writes each one's serial output here.
mapfile -t hint_logs < <(find "$hints_serial" -type f -name '*.log' | sort)
if ((${#hint_logs[@]})); then
	scan_serial "hints (${#hint_logs[@]} boots)" "${hint_logs[@]}"
else
	result "no_splat hints" FAIL "test/hints.test.ts left no serial log in \$SAMEPAGE_KERNEL_SERIAL_DIR ($hints_serial): its boots went unscanned"
fi

# 0004 on a real guest's hints: the hint test dumped the first 128 MiB of its page_hints guest's RAM;
# a boot with that dump in its initramfs has ksmd scan it as a VMM's guest RAM, hints off and on.
if [[ -s $artifacts/guest-ram.bin ]]; then
	{ cat "$artifacts/initramfs.list"; echo "file /guest-ram.bin $artifacts/guest-ram.bin 644 0 0"; } \
		>"$artifacts/initramfs-guest-ram.list"
	"$build_on/usr/gen_init_cpio" "$artifacts/initramfs-guest-ram.list" | gzip -1 >"$artifacts/initramfs-guest-ram.cpio.gz"
	boot ksm-hints-guest "$artifacts/bzImage" 900 1 "sp_mode=ksm-hints-guest" "$artifacts/initramfs-guest-ram.cpio.gz"
	rm -f "$artifacts/guest-ram.bin" "$artifacts/initramfs-guest-ram.cpio.gz"
else
	result ksm_hints_real_guest FAIL "test/hints.test.ts wrote no guest RAM dump: see $run_dir/hints-ava.tap"
fi

# --- 8. the same kernel with the series' options off, booted ------------------------------------
configure "$build_off" 1
if build "$build_off" "options-off"; then
	cp "$build_off/arch/x86/boot/bzImage" "$artifacts/bzImage-off"
	boot selftests-off "$artifacts/bzImage-off" 900 0 "sp_mode=selftests sp_kernel=off numa=fake=2"
fi

# --- 8b. the options-on kernel with KASAN -------------------------------------------------------
# The checks run again on a KASAN build (config-kasan.fragment), with a page_hints= hole so that
# patch 0003's boot-time code runs under it too; scan-splats.sh fails the run on any "BUG: KASAN"
# report. KASAN slows the guest about 3-4x: this boot runs without -icount (it does not measure) and
# gives the lookahead VM smoke run 12 s instead of 3 for ksmd's two full scans.
configure "$build_kasan" 0 "$here/config-kasan.fragment"
if build "$build_kasan" "kasan"; then
	cp "$build_kasan/arch/x86/boot/bzImage" "$artifacts/bzImage-kasan"
	boot checks-kasan "$artifacts/bzImage-kasan" 1800 0 "sp_mode=checks sp_vm_smoke_secs=12 page_hints=256K@64M $nullb_params" "" kasan/
	if grep -aq 'KernelAddressSanitizer initialized' "$run_dir/serial-checks-kasan.log"; then
		result kasan_active PASS "$(grep -a -m1 -o 'KernelAddressSanitizer initialized.*' "$run_dir/serial-checks-kasan.log" | tr -d '\r')"
	else
		result kasan_active FAIL "no 'KernelAddressSanitizer initialized' in $run_dir/serial-checks-kasan.log"
	fi
fi

# --- 9. the options-off kernel behaves as 6.12 and as the options-on kernel at knobs 0 -----------
# guest_line BOOT TAG: what boot BOOT printed after "SP TAG " (empty if it printed no such line).
guest_line() { { grep -a "^SP $2 " "$run_dir/serial-$1.log" 2>/dev/null || true; } | tr -d '\r' | cut -d' ' -f3-; }
# 6.12's KSM sysfs files, from the pristine source (every KSM_ATTR/KSM_ATTR_RO in mm/ksm.c).
upstream_sysfs=$(git_ show samepage-base:mm/ksm.c | sed -nE 's/^KSM_ATTR(_RO)?\(([a-z0-9_]+)\);.*/\2/p' | sort | paste -sd,)
on_sysfs=$(guest_line selftests-on KSM_SYSFS)
off_sysfs=$(guest_line selftests-off KSM_SYSFS)
if [[ -n $off_sysfs && $off_sysfs == "$upstream_sysfs" ]]; then
	result off_ksm_sysfs_as_6.12 PASS "$(tr ',' '\n' <<<"$off_sysfs" | wc -l) files, the same as 6.12's mm/ksm.c"
else
	result off_ksm_sysfs_as_6.12 FAIL "options-off: ${off_sysfs:-none}; 6.12: $upstream_sysfs"
fi
added=$(comm -13 <(tr ',' '\n' <<<"$upstream_sysfs") <(tr ',' '\n' <<<"$on_sysfs") | paste -sd,)
missing=$(comm -23 <(tr ',' '\n' <<<"$upstream_sysfs") <(tr ',' '\n' <<<"$on_sysfs") | paste -sd,)
if [[ -n $on_sysfs && -z $missing && ,$added, == *,lookahead,* && ,$added, == *,exclusive_cache,* ]]; then
	result on_ksm_sysfs_adds_knobs PASS "all of 6.12's files, plus: $added"
else
	result on_ksm_sysfs_adds_knobs FAIL "options-on: ${on_sysfs:-none}; missing from 6.12's: ${missing:-none}"
fi
on_bl=$(guest_line selftests-on BASELINE)
off_bl=$(guest_line selftests-off BASELINE)
if [[ -n $on_bl && $on_bl == "$off_bl" ]]; then
	result off_merges_as_on_knobs0 PASS "same workload, same counters and KSM pages: $on_bl"
else
	result off_merges_as_on_knobs0 FAIL "options-on at knobs 0: ${on_bl:-none}; options-off: ${off_bl:-none}"
fi
# Every upstream selftest result of the options-off kernel against the options-on kernel at knobs 0.
ksft_of() {
	local r name status detail
	for r in "${results[@]}"; do
		IFS='|' read -r name status detail <<<"$r"
		if [[ $name == ksft/$1/* ]]; then echo "${name#ksft/$1/} $status"; fi
	done | sort
}
ksft_on=$(ksft_of knobs0)
ksft_off=$(ksft_of off)
if [[ -n $ksft_off && $ksft_on == "$ksft_off" ]]; then
	result off_selftests_as_on_knobs0 PASS "$(grep -c '' <<<"$ksft_off") selftest results, the same on both kernels"
else
	result off_selftests_as_on_knobs0 FAIL "differ: $(diff <(echo "$ksft_on") <(echo "$ksft_off") | grep '^[<>]' | head -4 | paste -sd';')"
fi

# 6.12 sets KPF_KSM on every anonymous page (fs/proc/page.c: mapping & PAGE_MAPPING_KSM holds the ANON
# bit): the oracle test's probe must find that in every pass, so its live-view and per-PFN checks ran on
# the fallback that does not trust the flag (sp_live_ksm_flag_reliable() in native/core/src/live.c).
probe=$(cat "$run_dir"/serial-selftests-{on,off}.log 2>/dev/null | tr -d '\r' |
	grep -a 'samepage_kernel_oracle | # kpageflags KPF_KSM marks only KSM pages:' | awk '{print $NF}' | sort | uniq -c | paste -sd' ')
if [[ $probe =~ ^\ *3\ no$ ]]; then
	result oracle_probe_finds_6.12_kpf_ksm PASS "KPF_KSM read as unreliable in all 3 passes (off, knobs0, knobs1)"
else
	result oracle_probe_finds_6.12_kpf_ksm FAIL "probe answers (count, answer): ${probe:-none}"
fi

# The golden tests in the checks boot ran without AVX2 (QEMU's default CPU) and said so.
if grep -aq 'SPT checks/samepage_golden |   avx2: not on this CPU or build, not run' "$run_dir/serial-checks.log" 2>/dev/null; then
	result engine_hash_without_avx2 PASS "the hash's AVX2 loop was refused, not run, on QEMU's CPU; scalar and SSE2 gave the fixed values (rows ksft/checks/samepage_golden)"
else
	result engine_hash_without_avx2 FAIL "no 'avx2: not on this CPU' line from samepage_golden in $run_dir/serial-checks.log"
fi

report
