// ksm-agent run: the daemon (lib/agent/daemon.ts). Flags override the config file's keys.
import path from 'node:path';
import { runDaemon } from '../../agent/daemon.js';
import { DEFAULTS, DEFAULT_CONFIG_PATH } from '../../agent/config.js';
import { flag, noPositionals, num, parse, str } from '../args.js';
import type { Command, Io } from '../command.js';

const HELP = `Usage: ksm-agent run [--config PATH] [--listen HOST:PORT | --no-listen] [--interval S]
                    [--cpu-budget PERCENT] [--state-file PATH] [--lock-file PATH]
                    [--ksmtuned-conf PATH | --no-ksmtuned-conf] [--verbose]

The KSM daemon. It starts KSM when memory use crosses a threshold (ksmtuned's rule and
/etc/ksmtuned.conf keys), ramps pages_to_scan and sleep_millisecs by measured yield inside a
ksmd CPU budget (or hands the rate to the kernel's scan-time advisor on big hosts), stops
scanning when full passes gain nothing, and serves Prometheus metrics and a status page (/,
JSON under /api/: README.md, section The status page). On SIGTERM/SIGINT it
restores the KSM settings it found; after a crash its next start does (state file). One instance
at a time. SIGHUP re-reads the config, SIGUSR1 retunes at once. Logs go to stderr (journald).
See the README (section ksm-agent) for the policy, every config key and every metric.

Options (each overrides the config key in brackets):
  --config PATH          JSON config (default ${DEFAULT_CONFIG_PATH}, used when it exists)
  --listen HOST:PORT     metrics and status page address [listen] (default ${DEFAULTS.listen}; port 0 = any)
  --no-listen            serve no metrics and no status page
  --interval S           seconds between ticks [intervalSeconds] (default ${DEFAULTS.intervalSeconds})
  --cpu-budget PERCENT   ksmd CPU budget, % of one core [cpuBudgetPercent] (default ${DEFAULTS.cpuBudgetPercent})
  --state-file PATH      [stateFile] (default ${DEFAULTS.stateFile})
  --lock-file PATH       [lockFile] (default ${DEFAULTS.lockFile})
  --ksmtuned-conf PATH   [ksmtunedConf] (default ${DEFAULTS.ksmtunedConf}; --no-ksmtuned-conf: ignore it)
  --verbose              log every settings change too
Needs root.`;

export const run: Command = {
  name: 'run',
  summary: 'the daemon: threshold start, yield-driven tuning, metrics, safe restore',
  help: HELP,
  async run(argv: string[], _io: Io): Promise<number> {
    const p = parse('run', argv, {
      config: { type: 'string' },
      listen: { type: 'string' },
      'no-listen': { type: 'boolean' },
      interval: { type: 'string' },
      'cpu-budget': { type: 'string' },
      'state-file': { type: 'string' },
      'lock-file': { type: 'string' },
      'ksmtuned-conf': { type: 'string' },
      'no-ksmtuned-conf': { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
    });
    noPositionals('run', p);
    const overrides: Record<string, unknown> = {};
    const listen = str(p, 'listen');
    if (listen !== undefined) overrides['listen'] = listen;
    if (flag(p, 'no-listen')) overrides['listen'] = null;
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
