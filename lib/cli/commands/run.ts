// ksm-agent run: the daemon (lib/agent/daemon.ts). Flags override the config file's keys.
import path from 'node:path';
import { runDaemon } from '../../agent/daemon.js';
import { DEFAULTS, DEFAULT_CONFIG_PATH } from '../../agent/config.js';
import { flag, noPositionals, num, parse, str, strs } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';

const OPTIONS = [
  { name: 'config', type: 'string', value: 'PATH', description: 'JSON config', default: `${DEFAULT_CONFIG_PATH}, used when it exists` },
  { name: 'listen', type: 'string', value: 'HOST:PORT', configKey: 'listen', description: 'metrics and status page address; port 0 = any', default: DEFAULTS.listen ?? 'none' },
  { name: 'no-listen', type: 'boolean', alternativeTo: 'listen', description: 'serve no metrics and no status page' },
  { name: 'token-file', type: 'string', value: 'PATH', configKey: 'tokenFile', description: 'a root-only file (mode 0600/0400) holding a bearer token every route but /healthz then needs', default: 'none' },
  { name: 'allowed-host', type: 'string', value: 'NAME[:PORT]', multiple: true, configKey: 'allowedHosts', description: 'also answer requests whose Host is NAME (a reverse proxy, a DNS name of this host); the loopback names always are' },
  { name: 'interval', type: 'string', value: 'S', configKey: 'intervalSeconds', description: 'seconds between ticks', default: String(DEFAULTS.intervalSeconds) },
  { name: 'cpu-budget', type: 'string', value: 'PERCENT', configKey: 'cpuBudgetPercent', description: 'ksmd CPU budget, % of one core', default: String(DEFAULTS.cpuBudgetPercent) },
  { name: 'state-file', type: 'string', value: 'PATH', configKey: 'stateFile', description: 'where the settings found at start are kept until a clean exit', default: DEFAULTS.stateFile },
  { name: 'lock-file', type: 'string', value: 'PATH', configKey: 'lockFile', description: 'the one-instance lock', default: DEFAULTS.lockFile },
  { name: 'ksmtuned-conf', type: 'string', value: 'PATH', configKey: 'ksmtunedConf', description: "ksmtuned's config, read for its keys", default: DEFAULTS.ksmtunedConf ?? 'none' },
  { name: 'no-ksmtuned-conf', type: 'boolean', alternativeTo: 'ksmtuned-conf', description: "ignore ksmtuned's config" },
  { name: 'verbose', short: 'v', type: 'boolean', description: 'log every settings change too' },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'run',
  options: OPTIONS,
  about: `The KSM daemon. It starts KSM when memory use crosses a threshold (ksmtuned's rule and
/etc/ksmtuned.conf keys), ramps pages_to_scan and sleep_millisecs by measured yield inside a
ksmd CPU budget (or hands the rate to the kernel's scan-time advisor on big hosts), stops
scanning when full passes gain nothing, and serves Prometheus metrics and a status page (/,
JSON under /api/: README.md, section The status page). On SIGTERM/SIGINT it
restores the KSM settings it found; after a crash its next start does (state file). One instance
at a time. SIGHUP re-reads the config, SIGUSR1 retunes at once. Logs go to stderr (journald).
See the README (section ksm-agent) for the policy, every config key and every metric.`,
  notes: 'Needs root.',
});

export const run: Command = {
  name: 'run',
  summary: 'the daemon: threshold start, yield-driven tuning, metrics, safe restore',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], _io: Io): Promise<number> {
    const p = parse('run', argv, OPTIONS);
    noPositionals('run', p);
    const overrides: Record<string, unknown> = {};
    const listen = str(p, 'listen');
    if (listen !== undefined) overrides['listen'] = listen;
    if (flag(p, 'no-listen')) overrides['listen'] = null;
    const tokenFile = str(p, 'token-file');
    if (tokenFile !== undefined) overrides['tokenFile'] = path.resolve(tokenFile);
    const hosts = strs(p, 'allowed-host');
    if (hosts.length > 0) overrides['allowedHosts'] = hosts;
    const interval = num('run', p, 'interval', 0.2, 60);
    if (interval !== undefined) overrides['intervalSeconds'] = interval;
    const budget = num('run', p, 'cpu-budget', 1, 100);
    if (budget !== undefined) overrides['cpuBudgetPercent'] = budget;
    const stateFile = str(p, 'state-file');
    if (stateFile !== undefined) overrides['stateFile'] = path.resolve(stateFile);
    const lockFile = str(p, 'lock-file');
    if (lockFile !== undefined) overrides['lockFile'] = path.resolve(lockFile);
    const conf = str(p, 'ksmtuned-conf');
    if (conf !== undefined) overrides['ksmtunedConf'] = path.resolve(conf);
    if (flag(p, 'no-ksmtuned-conf')) overrides['ksmtunedConf'] = null;
    const configPath = str(p, 'config');
    return runDaemon({ overrides, verbose: flag(p, 'verbose'), ...(configPath === undefined ? {} : { configPath }) });
  },
};
