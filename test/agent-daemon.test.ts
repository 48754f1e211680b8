// ksm-agent run, the daemon, for real: root only; a bad config names the key; it turns KSM on
// when memory use crosses its threshold (ksmtuned.conf keys, real memory held by a child) and
// off again, stops scanning when passes gain nothing, serves /metrics equal to sysfs, restores
// every setting on SIGTERM, restores them after a SIGKILL on its next start, and refuses a second
// instance. Everything that changes KSM runs inside withSavedKsm.
import test from 'ava';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readKsm, readMeminfo, snapshotSettings } from '../lib/index.js';
import { startGuests, stopAll } from '../scripts/qemu/harness.js';
import { AgentSandbox, freeze, memoryHog, runCli, thaw, waitForQuietHost } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { parseSamples } from './helpers/promql.js';

const sandbox = new AgentSandbox('ksm-agent-daemon-');
const files = (name: string): string[] => sandbox.files(name);
const writeConfig = (name: string, config: Record<string, unknown>): Promise<string> => sandbox.writeConfig(name, config);
const agent = (args: string[]): AgentProcess => sandbox.agent(args);

test.before(() => sandbox.open());
test.after.always(async () => {
  await sandbox.close();
  await stopAll();
});

test('a non-root run gets a clear message and exit 77', async (t) => {
  const r = await runCli(['run', '--no-listen', ...files('nobody')], { asNobody: true });
  t.is(r.code, 77);
  t.regex(r.stderr, /^ksm-agent run: permission denied: ksm-agent run tunes KSM for the whole host; run it as root/);
  t.is(r.stderr.trim().split('\n').length, 1);
});

test('a bad config names the file, the key and the allowed values', async (t) => {
  const cases: [Record<string, unknown> | string, RegExp][] = [
    [{ cpuBudgetPercent: 500 }, /key "cpuBudgetPercent": must be a number from 1 to 100, got 500/],
    [{ advisor: 'sometimes' }, /key "advisor": must be one of "auto", "on", "off", got "sometimes"/],
    [{ cpuBudget: 20 }, /unknown key "cpuBudget"; allowed keys: intervalSeconds, .*cpuBudgetPercent/],
    [{ vms: { web1: { tenant: 'a', optout: true } } }, /key "vms.web1.optout": is not a VM key; allowed: "tenant", "optOut"/],
    [{ settings: { pages_to_scan: 100 } }, /key "settings.pages_to_scan": is not a setting the agent applies; allowed: .*use_zero_pages/],
    [{ pagesToScanMin: 500, pagesToScanMax: 100 }, /key "pagesToScanMin" \(500\) must not exceed "pagesToScanMax" \(100\)/],
    [{ fingerprint: { intervalSeconds: 1 } }, /key "fingerprint.intervalSeconds": must be a number from 10 to 604800, got 1/],
    [{ fingerprint: { keyFile: 'fp.key' } }, /key "fingerprint.keyFile": must be an absolute path, got "fp.key"/],
    [{ fingerprint: { entries: 7 } }, /key "fingerprint.entries": must be an integer from 256 to 1048576, got 7/],
    [{ fingerprint: { every: 60 } }, /key "fingerprint.every": is not a fingerprint key; allowed: "enabled", "intervalSeconds", "keyFile", "entries", "vms"/],
    ['{"intervalSeconds": 2,', /is not valid JSON/],
  ];
  for (const [config, re] of cases) {
    const file = path.join(sandbox.dir, 'bad.json');
    await writeFile(file, typeof config === 'string' ? config : JSON.stringify(config));
    const r = await runCli(['run', '--config', file, '--no-listen', ...files('bad')]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, re);
    t.true(r.stderr.includes(file), r.stderr);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const conf = path.join(sandbox.dir, 'ksmtuned.conf');
  await writeFile(conf, '# ksmtuned\nKSM_THRES_COEF=twenty\n');
  const r = await runCli(['run', '--ksmtuned-conf', conf, '--no-listen', ...files('bad')]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`${conf} line 2: KSM_THRES_COEF must be an integer .*got "twenty"`));
  t.false(existsSync(path.join(sandbox.dir, 'bad.state.json')), 'nothing was started');
});

test.serial('threshold start, settle, /metrics = sysfs, and SIGTERM restores every setting', async (t) => {
  const fill = { zero: { MiB: 16 }, shared: { amount: { MiB: 32 }, blockPages: 64, seed: 3 }, hot: { copies: 300, seed: 4 }, unique: { amount: { MiB: 8 } } };
  const guests = await startGuests([
    { name: 'agent-a', memMiB: 256, thp: false, fill },
    { name: 'agent-b', memMiB: 256, thp: false, fill },
  ]);
  const pids = guests.map((g) => g.pid);
  await waitForQuietHost(pids);
  await sandbox.withSavedKsm(async (snap) => {
    // ksmtuned's rule with ksmtuned's keys: KSM starts when "free" (MemFree + Buffers + Cached)
    // falls below KSM_THRES_CONST. Put the threshold 1 GiB below free memory now; a child then
    // holds 2.5 GiB, which takes free memory 1.5 GiB below it.
    const m = await readMeminfo();
    const freeKiB = Math.floor(((m['MemFree'] ?? 0) + (m['Buffers'] ?? 0) + (m['Cached'] ?? 0)) / 1024);
    const thresKiB = freeKiB - (1 << 20);
    const conf = path.join(sandbox.dir, 'threshold-ksmtuned.conf');
    await writeFile(conf, `# as ksmtuned reads it\nKSM_THRES_COEF=0\nKSM_THRES_CONST=${thresKiB}\nKSM_MONITOR_INTERVAL=60\n`);
    // The two guests belong to different tenants: once they share pages, the agent warns.
    const config = await writeConfig('threshold', {
      intervalSeconds: 0.5,
      listen: '127.0.0.1:0',
      ksmtunedConf: conf,
      vmMetricsSeconds: 1,
      tenantCheckSeconds: 5,
      vms: { 'agent-a': { tenant: 'red' }, 'agent-b': { tenant: 'blue' } },
    });
    const a = agent(['--config', config, ...files('threshold')]);
    const url = await a.metricsUrl();
    await a.waitForLine(/started pid=\d+ state=off/);
    t.truthy(a.lines.find((l) => l.includes(`ksmtuned_conf=${conf}`) && l.includes('threshold_percent=0') && l.includes(`threshold_min_kib=${thresKiB}`)));
    t.truthy(a.lines.find((l) => /KSM_MONITOR_INTERVAL is not used/.test(l)));
    t.true(existsSync(path.join(sandbox.dir, 'threshold.state.json')));
    await sleep(1500); // three ticks under the threshold: KSM stays off
    t.is((await readKsm()).settings.run, 0, `run under the threshold; agent log:\n${a.tail()}`);
    t.is(parseSamples(await (await fetch(url)).text()).get('samepage_agent_state{state="off"}'), 1, `state off; agent log:\n${a.tail()}`);

    const hog = await memoryHog(2.5 * 2 ** 30);
    try {
      const on = await a.waitForLine(/state merging: memory pressure: past the threshold .*threshold_kib=(\d+)/, 20_000);
      t.is(Number(on[1]), thresKiB);
      // Pressure starts while the hog is still filling its memory; on a slow host the agent may
      // have merged the small guests and settled (run=0) before the hog says it holds it all.
      // So: ksmd runs now, or the agent has settled (its log line follows the write to sysfs).
      if ((await readKsm()).settings.run !== 1) await a.waitForLine(/state settled: /, 5_000);
      for (let i = 0; i < 300 && ((await readKsm()).counters.pages_sharing ?? 0) < 5000; i++) await sleep(200);
      t.true(((await readKsm()).counters.pages_sharing ?? 0) >= 5000, 'ksmd merged the guests');

      // Frozen guests offer nothing new: after settlePasses passes without gain the agent stops
      // ksmd (run=0) although memory is still short.
      freeze(pids);
      try {
        await a.waitForLine(/state settled: \d+ full passes in a row gained almost nothing/, 120_000);
        t.is((await readKsm()).settings.run, 0, `run once settled; agent log:\n${a.tail()}`);

        // KSM stands still now: every node_ksmd_* series equals its sysfs file.
        const before = await readKsm();
        const metrics = parseSamples(await (await fetch(url)).text());
        const after = await readKsm();
        t.deepEqual(after.counters, before.counters, 'KSM stood still during the scrape');
        const k = { ...after.settings, ...after.counters } as Record<string, number | boolean | string>;
        const num = (v: number | boolean | string | undefined): number => (typeof v === 'boolean' ? (v ? 1 : 0) : Number(v));
        for (const f of ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'pages_to_scan', 'run', 'merge_across_nodes']) {
          t.is(metrics.get(`node_ksmd_${f}`), num(k[f]), f);
        }
        t.is(metrics.get('node_ksmd_full_scans_total'), num(k['full_scans']));
        t.is(metrics.get('node_ksmd_sleep_seconds'), num(k['sleep_millisecs']) / 1000);
        t.is(metrics.get('node_ksmd_general_profit_bytes'), num(k['general_profit']));
        t.is(metrics.get('samepage_ksm_pages_scanned_total'), num(k['pages_scanned']));
        t.is(metrics.get('samepage_ksm_setting{setting="use_zero_pages"}'), num(k['use_zero_pages']));
        const saved = guests.map((g) => metrics.get(`samepage_vm_saved_bytes{vm="${g.name}"}`));
        t.true(saved.every((v) => v !== undefined && v > 0), JSON.stringify(saved));
        // The column sums to general_profit with what other KSM users save (other VMs or
        // processes on a shared host: CI saw one such page).
        let attributed = metrics.get('samepage_other_saved_bytes') ?? 0;
        for (const [series, value] of metrics) if (series.startsWith('samepage_vm_saved_bytes{')) attributed += value;
        t.is(attributed, num(k['general_profit']), 'per-VM saved bytes and other processes\' sum to general_profit');
        t.is(metrics.get('samepage_agent_state{state="settled"}'), 1, `state settled; agent log:\n${a.tail()}`);
        t.is(metrics.get('samepage_agent_memory_pressure'), 1, `memory pressure; agent log:\n${a.tail()}`);
        t.is(metrics.get('samepage_agent_threshold_bytes'), thresKiB * 1024);
        t.true((metrics.get('samepage_ksmd_cpu_seconds_total') ?? 0) > 0);
        t.true((metrics.get('process_resident_memory_bytes') ?? 0) > 0);
        t.is(metrics.get('samepage_vm_info{vm="agent-a",tenant="red",opted_out="0"}'), 1, 'vm_info of agent-a');

        // Different tenants sharing pages: a warning naming both, and a metric.
        const warn = await a.waitForLine(/warning: VMs of different tenants share memory: (agent-[ab]) \(tenant (\w+)\) shares (\d+) KSM pages with (agent-[ab]) \(tenant (\w+)\)/, 30_000);
        t.not(warn[1], warn[4]);
        t.not(warn[2], warn[5]);
        t.true(Number(warn[3]) > 0);
        const later = parseSamples(await (await fetch(url)).text());
        t.true((later.get(`samepage_vm_cross_tenant_pages{vm="${warn[1] as string}",peer="${warn[4] as string}"}`) ?? 0) > 0);
      } finally {
        thaw(pids);
      }
    } finally {
      await hog.stop();
    }
    await a.waitForLine(/state off: memory pressure is gone/, 20_000);
    t.is((await readKsm()).settings.run, 0);

    t.is(await a.stop('SIGTERM'), 0);
    await a.waitForLine(/restored the KSM settings found at start/);
    t.deepEqual((await snapshotSettings()).files, snap.files);
    t.false(existsSync(path.join(sandbox.dir, 'threshold.state.json')), 'a clean exit removes the state file');
  });
  await stopAll();
});

test.serial('one instance at a time; after a SIGKILL the next start restores the settings', async (t) => {
  await sandbox.withSavedKsm(async (snap) => {
    const busy = await writeConfig('busy', { thresholdPercent: 100, ksmtunedConf: null, intervalSeconds: 0.5, listen: null });
    const first = agent(['--config', busy, ...files('crash')]);
    await first.waitForLine(/started pid=\d+ state=merging/);
    // It turned ksmd on and set its rate (with nothing to merge it may settle, run=0, at once).
    const changed = await snapshotSettings();
    t.notDeepEqual(changed.files, snap.files);
    t.not(changed.files['pages_to_scan'], snap.files['pages_to_scan']);

    const second = await runCli(['run', '--config', busy, ...files('crash')]);
    t.is(second.code, 5);
    t.regex(second.stderr, new RegExp(`another ksm-agent is already running \\(pid ${first.pid}\\): it holds .*crash.lock`));
    t.is(second.stderr.trim().split('\n').length, 1);

    await first.stop('SIGKILL');
    const state = JSON.parse(await readFile(path.join(sandbox.dir, 'crash.state.json'), 'utf8')) as { pid: number; snapshot: { files: Record<string, string> } };
    t.is(state.pid, first.pid);
    t.deepEqual(state.snapshot.files, snap.files);
    t.notDeepEqual((await snapshotSettings()).files, snap.files, 'a SIGKILLed agent cannot restore anything');

    // The next start (with a config under which it changes nothing) restores them first.
    const calm = await writeConfig('calm', { thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.5, listen: null });
    const next = agent(['--config', calm, ...files('crash')]);
    await next.waitForLine(new RegExp(`the last ksm-agent \\(pid ${first.pid}, started .*\\) did not exit cleanly: restoring`));
    await next.waitForLine(/started pid=\d+ state=off/);
    t.deepEqual((await snapshotSettings()).files, snap.files);
    t.is(await next.stop('SIGINT'), 0);
    t.deepEqual((await snapshotSettings()).files, snap.files);
    t.false(existsSync(path.join(sandbox.dir, 'crash.state.json')));
  });
});

test.serial('with advisor "on" the kernel scan-time advisor sets the rate inside the CPU budget', async (t) => {
  await sandbox.withSavedKsm(async (snap) => {
    t.not((await readKsm()).settings.advisor_mode, undefined, 'this kernel has the scan-time advisor (6.8+)');
    const config = await writeConfig('advisor', { thresholdPercent: 100, ksmtunedConf: null, intervalSeconds: 0.5, listen: null, advisor: 'on', cpuBudgetPercent: 30, advisorTargetScanSeconds: 45 });
    const a = agent(['--config', config, ...files('advisor')]);
    await a.waitForLine(/state merging: memory pressure: past the threshold mode=advisor/);
    const k = await readKsm();
    t.like(k.settings, { advisor_mode: 'scan-time', advisor_max_cpu: 30, advisor_target_scan_time: 45, run: 1 });
    // The advisor starts ksmd at advisor_min_pages_to_scan, which the agent sized to the budget.
    t.not(k.settings.advisor_min_pages_to_scan, Number(snap.files['advisor_min_pages_to_scan']));
    t.is(await a.stop('SIGTERM'), 0);
    t.deepEqual((await snapshotSettings()).files, snap.files);
  });
});

test('metrics: one read of each source per scrape, prom-client through its public entry only', async (t) => {
  const { createMetrics } = await import('../lib/agent/metrics.js');
  const calls = { readKsm: 0, ksmdCpuSeconds: 0, cowKsm: 0, vmSavings: 0, vmPolicies: 0, crossTenant: 0, fingerprints: 0, agent: 0 };
  const ksm = await readKsm();
  const endpoint = createMetrics({
    readKsm: () => (calls.readKsm++, Promise.resolve(ksm)),
    ksmdCpuSeconds: () => (calls.ksmdCpuSeconds++, Promise.resolve(1)),
    cowKsm: () => (calls.cowKsm++, Promise.resolve(2)),
    vmSavings: () => (calls.vmSavings++, Promise.resolve({ vms: [], otherBytes: 0, generalProfit: 0 })),
    vmPolicies: () => (calls.vmPolicies++, []),
    crossTenant: () => (calls.crossTenant++, []),
    fingerprints: () => (calls.fingerprints++, undefined),
    agent: () => (calls.agent++, { cpuBudget: 0.2, ticks: 1, settingWrites: 0, errors: 0, tenantWarnings: 0, cacheBytesReclaimed: 0, startedAt: Date.now() }),
  });
  const text = await endpoint.metrics();
  t.deepEqual(calls, { readKsm: 1, ksmdCpuSeconds: 1, cowKsm: 1, vmSavings: 1, vmPolicies: 1, crossTenant: 1, fingerprints: 1, agent: 1 });
  t.is(parseSamples(text).get('node_ksmd_pages_to_scan'), ksm.settings.pages_to_scan);
  t.regex(endpoint.contentType, /^text\/plain; version=0\.0\.4/);
  // The compiled agent requires 'prom-client' itself, never a file inside it.
  const src = await readFile(path.resolve(__dirname, '../lib/agent/metrics.js'), 'utf8');
  t.deepEqual([...src.matchAll(/require\("(prom-client[^"]*)"\)/g)].map((m) => m[1]), ['prom-client']);
});

test('metrics: per-VM fingerprint figures from the latest sketches, names escaped, none without sketches', async (t) => {
  const { createMetrics } = await import('../lib/agent/metrics.js');
  const { encodeSketches } = await import('../lib/fingerprint/file.js');
  const { keyIdOf, sketchBuffer } = await import('../lib/index.js');
  const raw = Buffer.alloc(32, 7);
  const key = { key: raw, id: keyIdOf(raw), path: '(test)' };
  // web: 300 distinct pages, 100 copies of one more, 50 zero pages; a hostile name: 40 distinct pages.
  const pageOf = (family: number, i: number): Buffer => {
    const p = Buffer.alloc(4096);
    p.writeUInt32LE(family, 0);
    p.writeUInt32LE(i, 4);
    return p;
  };
  const web = Buffer.concat([...Array.from({ length: 300 }, (_, i) => pageOf(1, i)), ...Array.from({ length: 100 }, () => pageOf(2, 0)), Buffer.alloc(50 * 4096)]);
  const evilName = 'db"\\\n{x="1"}';
  const now = Date.now();
  const sketches = [
    { ...sketchBuffer(web, key, { name: 'web', host: 'h1' }, 1024), takenAt: now - 30_000, swappedPages: 0 },
    { ...sketchBuffer(Buffer.concat(Array.from({ length: 40 }, (_, i) => pageOf(3, i))), key, { name: evilName, host: 'h1' }, 1024), takenAt: now - 5_000, swappedPages: 0 },
  ];
  let snapshot: import('../lib/agent/fingerprints.js').FingerprintSnapshot | undefined;
  const endpoint = createMetrics({
    readKsm: () => readKsm(),
    ksmdCpuSeconds: () => Promise.resolve(1),
    cowKsm: () => Promise.resolve(2),
    vmSavings: () => Promise.resolve({ vms: [], otherBytes: 0, generalProfit: 0 }),
    vmPolicies: () => [],
    crossTenant: () => [],
    fingerprints: () => snapshot,
    agent: () => ({ cpuBudget: 0.2, ticks: 1, settingWrites: 0, errors: 0, tenantWarnings: 0, cacheBytesReclaimed: 0, startedAt: Date.now() }),
  });
  const before = await endpoint.metrics();
  t.notRegex(before, /^samepage_vm_fingerprint_\w+\{/m, 'no per-VM sample before the first sketch');
  t.notRegex(before, /^samepage_fingerprint_run_seconds /m);
  t.regex(before, /^# TYPE samepage_vm_fingerprint_pages gauge$/m);

  snapshot = { keyId: key.id, host: 'h1', startedAt: now - 31_000, finishedAt: now - 4_000, sketches, failures: [], bytes: encodeSketches(sketches, 'h1') };
  const text = await endpoint.metrics();
  const m = parseSamples(text);
  t.is(m.get('samepage_vm_fingerprint_pages{vm="web"}'), 450);
  t.is(m.get('samepage_vm_fingerprint_zero_pages{vm="web"}'), 50);
  t.is(m.get('samepage_vm_fingerprint_distinct_estimate{vm="web"}'), 301);
  const age = m.get('samepage_vm_fingerprint_sketch_age_seconds{vm="web"}') ?? 0;
  t.true(age >= 30 && age < 40, `age ${age}`);
  t.is(m.get('samepage_fingerprint_run_seconds'), 27);
  // The hostile name stays one label value on one line: quote, backslash and newline escaped.
  t.true(text.includes('samepage_vm_fingerprint_pages{vm="db\\"\\\\\\n{x=\\"1\\"}"} 40'), text.split('\n').filter((l) => l.includes('fingerprint_pages')).join('\n'));
  t.false(text.split('\n').some((l) => l.startsWith('{x=')), 'no forged line');
  // A VM gone from the next sketches loses its series.
  snapshot = { ...snapshot, sketches: sketches.slice(0, 1) };
  t.notRegex(await endpoint.metrics(), /^samepage_vm_fingerprint_pages\{vm="db/m);
});
