#!/usr/bin/env bash
# scan-splats.sh SERIAL_LOG...: finds kernel reports in guest serial logs.
#
# Prints every line that starts (or, with a printk timestamp, contains) a kernel report, as
# FILE:LINE:TEXT, and exits 1 if there is one, 0 if there is none, 2 if a file cannot be read.
# A report is what the debug options of scripts/kernel/config.fragment print when they find a
# fault: WARN/WARN_ON ("WARNING: CPU:", "------------[ cut here ]"), BUG/VM_BUG_ON ("kernel BUG
# at", "BUG: ..." incl. KASAN, sleeping in atomic, bad page state, soft lockup), lockdep
# ("WARNING: possible ...", "INFO: possible ..."), list debugging ("list_add corruption"), Oops,
# general protection faults, hung tasks and RCU stalls ("INFO: ..."), panics, and any stack dump
# ("Call Trace:").
#
# The guest's own output (SP ..., SPT ...) never starts a line with these words; a kernel message
# that the console interleaves into the middle of such a line still carries its "[ seconds.usecs]"
# timestamp (CONFIG_PRINTK_TIME), which is why both forms are matched.
set -uo pipefail

if (($# == 0)); then
	echo "usage: scan-splats.sh SERIAL_LOG... (prints kernel reports; exit 1 if any)" >&2
	exit 2
fi

# An optional "subsystem: " prefix covers "watchdog: BUG: soft lockup" and "rcu: INFO: ...".
report='([a-z0-9_]+: )?(WARNING:|BUG:|kernel BUG at|Oops|INFO: |Kernel panic|general protection fault|list_(add|del) corruption|page dumped because|UBSAN:|Call Trace:|-+\[ cut here \]-+)'
pattern="(^|\[ *[0-9]+\.[0-9]+\] )$report"

status=0
for f in "$@"; do
	if [[ ! -r $f ]]; then
		echo "scan-splats.sh: cannot read $f: check the path (a serial log of a guest boot)" >&2
		exit 2
	fi
	# -a: serial logs can hold stray binary bytes; CRs from the console are dropped first.
	if tr -d '\r' <"$f" | grep -a -n -E "$pattern" | sed "s|^|$f:|"; then
		status=1
	fi
done
exit $status
