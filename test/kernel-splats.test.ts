// scripts/kernel/scan-splats.sh, which fails `npm run test:kernel` on any kernel report in a guest's
// serial log: it finds each kind of report the debug kernel prints (WARN, BUG/VM_BUG_ON, KASAN,
// lockdep, list corruption, Oops, soft lockup, RCU stall, hung task), with or without printk
// timestamps, with CRLF line ends and interleaved into the guest program's own output; it passes a
// clean boot log and the guest's result lines; a missing file or no argument is a usage error (2).
// The samples are written in the kernel's own formats (lib/bug.c, kernel/locking/lockdep.c,
// mm/kasan/report.c, lib/list_debug.c, kernel/watchdog.c, kernel/rcu/tree_stall.h, kernel/hung_task.c).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SCANNER = path.resolve(__dirname, '../../scripts/kernel/scan-splats.sh');
const dir = mkdtempSync(path.join(os.tmpdir(), 'scan-splats-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function scan(...logs: string[]): { status: number | null; stdout: string; stderr: string } {
  const files = logs.map((text) => {
    const f = path.join(dir, `serial-${n++}.log`);
    writeFileSync(f, text);
    return f;
  });
  const r = spawnSync('bash', [SCANNER, ...files], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const clean = [
  '[    0.000000] Linux version 6.12.118 (root@host) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP',
  '[    0.000000] Command line: console=ttyS0 panic=-1 brd.rd_nr=2 sp_mode=selftests',
  '[    0.012000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar',
  '[    0.013000] ... MAX_LOCKDEP_SUBCLASSES:  8',
  '[    0.020000] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!',
  '[    0.150000] smp: Brought up 2 nodes, 2 CPUs',
  '[    0.400000] Run /init as init process',
  'SP START console=ttyS0 panic=-1',
  'SP RESULT lookahead_same_merges PASS off=3584/7168 on=3584/7168',
  'SP RESULT ksft/knobs0/ksm_tests_-N_-m_1 SKIP KSM NUMA merging (At least 2 NUMA nodes must be available)',
  'SPT knobs0/ksm_functional_tests | # [RUN] test_unmerge_uffd_wp',
  'SPT knobs0/ksm_functional_tests | ok 4 Pages were unmerged',
  'SP DONE failed=0',
].join('\n') + '\n';

const splats: Record<string, string> = {
  warn: '[   12.345678] ------------[ cut here ]------------\n' +
    '[   12.345680] WARNING: CPU: 1 PID: 23 at mm/ksm.c:2412 ksm_do_scan+0x1234/0x2000\n' +
    '[   12.345700] Call Trace:\n',
  lockdep_circular: '[   30.000001] ======================================================\n' +
    '[   30.000002] WARNING: possible circular locking dependency detected\n' +
    '[   30.000003] 6.12.118 #1 Not tainted\n',
  lockdep_no_timestamp: 'WARNING: possible recursive locking detected\n',
  lockdep_irq_inversion: '[    8.100000] INFO: possible irq lock inversion dependency detected\n',
  kasan: '[    5.100000] BUG: KASAN: slab-use-after-free in ksm_scan_thread+0x1a/0x300\n',
  vm_bug_on: '[    7.000000] page dumped because: VM_BUG_ON_FOLIO(!folio_test_locked(folio))\n' +
    '[    7.000001] kernel BUG at mm/ksm.c:1234!\n',
  oops: '[    9.000000] Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP NOPTI\n',
  soft_lockup: '[   44.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [ksmd:23]\n',
  rcu_stall: '[   60.000000] rcu: INFO: rcu_sched self-detected stall on CPU\n',
  hung_task: '[  240.000000] INFO: task ksmd:23 blocked for more than 120 seconds.\n',
  list_corruption: '[    3.000000] list_add corruption. prev->next should be next (ffff888003a1c0d8), but was ffff888003a1c0e8. (prev=ffff888003a1c0d8).\n',
  atomic_sleep_interleaved: 'SP MEASURE workload=random lookahead=1 full_s[   12.000000] BUG: sleeping function called from invalid context at mm/ksm.c:100\n',
  crlf: '[    1.000000] BUG: Bad page state in process ksm_tests  pfn:1a2b3\r\n',
  panic: '[    2.000000] Kernel panic - not syncing: Fatal exception\n',
};

test('a clean boot log and the guest program output pass (exit 0, nothing printed)', (t) => {
  const r = scan(clean);
  t.is(r.status, 0, r.stdout + r.stderr);
  t.is(r.stdout, '');
});

for (const [kind, text] of Object.entries(splats)) {
  test(`finds a ${kind} report among clean lines (exit 1, the line printed with file and line number)`, (t) => {
    const r = scan(clean + text + clean);
    t.is(r.status, 1, r.stdout + r.stderr);
    const lines = text.split('\n');
    const at = lines.findIndex((l) => l.trim() !== '' && !l.includes('====='));
    const first = lines[at] ?? '';
    // clean's lines are 1..N-1 of the file; the report's lines follow
    const firstLine = clean.split('\n').length + at;
    t.regex(r.stdout, new RegExp(`serial-\\d+\\.log:${firstLine}:`));
    t.true(r.stdout.includes(first.replace(/\r$/, '').slice(-40)), r.stdout);
  });
}

test('every log is scanned: a report in the second of two files fails', (t) => {
  const r = scan(clean, clean + splats.warn);
  t.is(r.status, 1);
  t.regex(r.stdout, /serial-\d+\.log:\d+:\[ +12\.345680\] WARNING: CPU: 1/);
});

test('no argument or an unreadable file is a usage error (exit 2) that names the file', (t) => {
  const none = spawnSync('bash', [SCANNER], { encoding: 'utf8' });
  t.is(none.status, 2);
  t.regex(none.stderr, /usage: scan-splats\.sh/);
  const missing = spawnSync('bash', [SCANNER, path.join(dir, 'no-such.log')], { encoding: 'utf8' });
  t.is(missing.status, 2);
  t.regex(missing.stderr, /cannot read .*no-such\.log/);
});
