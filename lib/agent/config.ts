// The agent's configuration: a JSON file (default /etc/samepage/agent.json), ksmtuned.conf keys
// when that file exists, and command-line overrides, in rising precedence. Every value is checked
// here once; an error names the file, the key and what is allowed.
import { SETTING_NAMES, formatSetting } from '../ksm-files.js';
import type { KsmSettings, SettingName } from '../ksm-files.js';
import { DEFAULT_CONFIG_PATH, DEFAULT_LOCK_FILE, DEFAULT_STATE_FILE, UNMERGE_RESERVE_PERCENT } from '../paths.js';
import { DEFAULT_KEY_PATH } from '../fingerprint/key.js';
import { MAX_ENTRIES, MIN_ENTRIES } from '../fingerprint/sketch.js';
import { readOwnFile } from '../safe-files.js';
import type { VmPolicy } from '../tenants.js';
import { ConfigError } from './config-error.js';
import { parseHost } from './http-host.js';
import { KSMTUNED_KEYS, readKsmtunedConf } from './ksmtuned-conf.js';
import type { KsmtunedConf } from './ksmtuned-conf.js';

export type { VmPolicy } from '../tenants.js';
export { DEFAULT_CONFIG_PATH };
export { ConfigError } from './config-error.js';

export interface CacheConfig {
  enabled: boolean;
  intervalSeconds: number;
  dryRun: boolean;
  /** VM names or pids; empty = every VM. */
  vms: string[];
}

/** The sketches served at /api/fingerprint and their per-VM metrics (lib/agent/fingerprints.ts). */
export interface FingerprintConfig {
  /** Sketch at all (only while the key file exists). */
  enabled: boolean;
  /** The shortest time between the starts of two sketches of every VM. */
  intervalSeconds: number;
  /** The fleet key (ksm-agent fingerprint --init-key); no file, no sketches. */
  keyFile: string;
  /** k, the most entries a sketch keeps; null: one per 64 pages of guest RAM, 4096..65536. */
  entries: number | null;
  /** VM names or pids to sketch; empty = every QEMU VM. */
  vms: string[];
}

export interface AgentConfig {
  intervalSeconds: number;
  thresholdPercent: number;
  thresholdMinKiB: number;
  freeMemory: 'ksmtuned' | 'available';
  cpuBudgetPercent: number;
  pagesToScanMin: number;
  pagesToScanMax: number;
  sleepMillisecs: number;
  sleepMillisecsMax: number;
  advisor: 'auto' | 'on' | 'off';
  advisorMinPassSeconds: number;
  advisorTargetScanSeconds: number;
  minYield: number;
  settlePasses: number;
  recheckSeconds: number;
  listen: string | null;
  /** Extra Host names the HTTP server answers (NAME or NAME:PORT); see http-host.ts. */
  allowedHosts: string[];
  /** A root-only file holding the HTTP bearer token; null = no token. */
  tokenFile: string | null;
  stateFile: string;
  lockFile: string;
  ksmtunedConf: string | null;
  vmMetricsSeconds: number;
  tenantCheckSeconds: number;
  historySamples: number;
  unmergeOnExit: boolean;
  unmergeReservePercent: number;
  vms: Record<string, VmPolicy>;
  settings: KsmSettings;
  cache: CacheConfig;
  fingerprint: FingerprintConfig;
}

export const DEFAULTS: AgentConfig = {
  intervalSeconds: 2,
  thresholdPercent: 20,
  thresholdMinKiB: 2048,
  freeMemory: 'ksmtuned',
  cpuBudgetPercent: 20,
  pagesToScanMin: 64,
  pagesToScanMax: 30000,
  sleepMillisecs: 10,
  sleepMillisecsMax: 1000,
  advisor: 'auto',
  advisorMinPassSeconds: 20,
  advisorTargetScanSeconds: 60,
  minYield: 0.001,
  settlePasses: 3,
  recheckSeconds: 120,
  listen: '127.0.0.1:9662',
  allowedHosts: [],
  tokenFile: null,
  stateFile: DEFAULT_STATE_FILE,
  lockFile: DEFAULT_LOCK_FILE,
  ksmtunedConf: '/etc/ksmtuned.conf',
  vmMetricsSeconds: 15,
  tenantCheckSeconds: 60,
  historySamples: 3600,
  unmergeOnExit: false,
  unmergeReservePercent: UNMERGE_RESERVE_PERCENT,
  vms: {},
  settings: {},
  cache: { enabled: false, intervalSeconds: 600, dryRun: false, vms: [] },
  fingerprint: { enabled: true, intervalSeconds: 3600, keyFile: DEFAULT_KEY_PATH, entries: null, vms: [] },
};

type Check = (value: unknown, where: string) => unknown;

/** `config F: key "vms"` + "web1" → `config F: key "vms.web1"`: where a nested value sits. */
function sub(where: string, key: string): string {
  return where.endsWith('"') ? `${where.slice(0, -1)}.${key}"` : `${where}.${key}`;
}

function fail(where: string, allowed: string, value: unknown): never {
  throw new ConfigError(`${where}: ${allowed}, got ${JSON.stringify(value) ?? String(value)}`);
}

const num =
  (min: number, max: number, integer = false): Check =>
  (v, where) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      fail(where, `must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, v);
    }
    return v;
  };
const oneOf =
  (...choices: string[]): Check =>
  (v, where) => {
    if (typeof v !== 'string' || !choices.includes(v)) fail(where, `must be one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`, v);
    return v;
  };
const bool: Check = (v, where) => {
  if (typeof v !== 'boolean') fail(where, 'must be true or false', v);
  return v;
};
const path: Check = (v, where) => {
  if (typeof v !== 'string' || !v.startsWith('/')) fail(where, 'must be an absolute path', v);
  return v;
};
const pathOrNull: Check = (v, where) => (v === null ? null : path(v, where));
const listen: Check = (v, where) => {
  if (v === null || v === false) return null;
  if (typeof v !== 'string' || parseListen(v) === undefined) fail(where, 'must be "HOST:PORT" (port 0-65535; 127.0.0.1:9662 by default) or null to serve no metrics', v);
  return v;
};
const allowedHosts: Check = (v, where) => {
  const shape = 'must be an array of host names or addresses the HTTP server answers to, each NAME or NAME:PORT (no wildcards: they would let DNS rebinding through)';
  if (!Array.isArray(v) || v.length > 64) fail(where, shape, v);
  for (const entry of v as unknown[]) {
    if (typeof entry !== 'string' || parseHost(entry) === undefined) fail(where, shape, entry);
  }
  return [...(v as string[])];
};

const vmsCheck: Check = (v, where) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'must be an object mapping VM names to { "tenant": "NAME", "optOut": true|false }', v);
  const out: Record<string, VmPolicy> = {};
  for (const [name, policy] of Object.entries(v as Record<string, unknown>)) {
    const w = sub(where, name);
    if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) fail(w, 'must be an object with "tenant" and/or "optOut"', policy);
    const p: VmPolicy = {};
    for (const [k, val] of Object.entries(policy as Record<string, unknown>)) {
      if (k === 'tenant') {
        if (typeof val !== 'string' || val === '') fail(sub(w, 'tenant'), 'must be a non-empty string', val);
        p.tenant = val as string;
      } else if (k === 'optOut') {
        p.optOut = bool(val, sub(w, 'optOut')) as boolean;
      } else {
        fail(sub(w, k), 'is not a VM key; allowed: "tenant", "optOut"', val);
      }
    }
    out[name] = p;
  }
  return out;
};

/** KSM settings the agent applies at start; run, the scan rate and the advisor stay the agent's. */
const FIXED_SETTINGS: readonly SettingName[] = SETTING_NAMES.filter(
  (n) => !['run', 'pages_to_scan', 'sleep_millisecs'].includes(n) && !n.startsWith('advisor_'),
);
const settingsCheck: Check = (v, where) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, `must be an object of KSM settings (${FIXED_SETTINGS.join(', ')})`, v);
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (!FIXED_SETTINGS.includes(k as SettingName)) {
      fail(sub(where, k), `is not a setting the agent applies; allowed: ${FIXED_SETTINGS.join(', ')} (run, pages_to_scan, sleep_millisecs and advisor_* are the agent's to tune)`, val);
    }
    try {
      formatSetting(k, val);
    } catch (err) {
      throw new ConfigError(`${sub(where, k)}: ${(err as Error).message}`);
    }
  }
  return v;
};
const cacheCheck: Check = (v, where) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'must be an object { "enabled", "intervalSeconds", "dryRun", "vms" }', v);
  const out: CacheConfig = { ...DEFAULTS.cache };
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const w = sub(where, k);
    if (k === 'enabled') out.enabled = bool(val, w) as boolean;
    else if (k === 'dryRun') out.dryRun = bool(val, w) as boolean;
    else if (k === 'intervalSeconds') out.intervalSeconds = num(10, 86400)(val, w) as number;
    else if (k === 'vms') {
      if (!Array.isArray(val) || !val.every((x) => typeof x === 'string' && x !== '')) fail(w, 'must be an array of VM names or pids (strings)', val);
      out.vms = val as string[];
    } else fail(w, 'is not a cache key; allowed: "enabled", "intervalSeconds", "dryRun", "vms"', val);
  }
  return out;
};

const fingerprintCheck: Check = (v, where) => {
  const keys = '"enabled", "intervalSeconds", "keyFile", "entries", "vms"';
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, `must be an object { ${keys} }`, v);
  const out: FingerprintConfig = { ...DEFAULTS.fingerprint };
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const w = sub(where, k);
    if (k === 'enabled') out.enabled = bool(val, w) as boolean;
    else if (k === 'intervalSeconds') out.intervalSeconds = num(10, 7 * 86400)(val, w) as number;
    else if (k === 'keyFile') out.keyFile = path(val, w) as string;
    else if (k === 'entries') out.entries = val === null ? null : (num(MIN_ENTRIES, MAX_ENTRIES, true)(val, w) as number);
    else if (k === 'vms') {
      if (!Array.isArray(val) || !val.every((x) => typeof x === 'string' && x !== '')) fail(w, 'must be an array of VM names or pids (strings)', val);
      out.vms = [...(val as string[])];
    }
    else fail(w, `is not a fingerprint key; allowed: ${keys}`, val);
  }
  return out;
};

const SCHEMA: Record<keyof AgentConfig, Check> = {
  intervalSeconds: num(0.2, 60),
  thresholdPercent: num(0, 100, true),
  thresholdMinKiB: num(0, Number.MAX_SAFE_INTEGER, true),
  freeMemory: oneOf('ksmtuned', 'available'),
  cpuBudgetPercent: num(1, 100),
  pagesToScanMin: num(1, 1_000_000, true),
  pagesToScanMax: num(1, 1_000_000, true),
  sleepMillisecs: num(1, 60_000, true),
  sleepMillisecsMax: num(1, 60_000, true),
  advisor: oneOf('auto', 'on', 'off'),
  advisorMinPassSeconds: num(1, 86400),
  advisorTargetScanSeconds: num(1, 86400, true),
  minYield: num(0, 1),
  settlePasses: num(1, 100, true),
  recheckSeconds: num(5, 86400),
  listen,
  allowedHosts,
  tokenFile: pathOrNull,
  stateFile: path,
  lockFile: path,
  ksmtunedConf: pathOrNull,
  vmMetricsSeconds: num(1, 3600),
  tenantCheckSeconds: num(5, 86400),
  historySamples: num(10, 1_000_000, true),
  unmergeOnExit: bool,
  unmergeReservePercent: num(0, 90),
  vms: vmsCheck,
  settings: settingsCheck,
  cache: cacheCheck,
  fingerprint: fingerprintCheck,
};

export const CONFIG_KEYS = Object.keys(SCHEMA) as (keyof AgentConfig)[];

/** Checks a partial configuration object (from JSON or flags); `where` names its origin. */
export function validatePartial(raw: unknown, where: string): Partial<AgentConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${where}: must be a JSON object of settings such as {"cpuBudgetPercent": 20}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const check = SCHEMA[key as keyof AgentConfig];
    if (check === undefined) {
      throw new ConfigError(`${where}: unknown key "${key}"; allowed keys: ${CONFIG_KEYS.join(', ')}`);
    }
    out[key] = check(value, `${where}: key "${key}"`);
  }
  return out as Partial<AgentConfig>;
}

/** Cross-key rules, checked on the merged result. */
function checkWhole(c: AgentConfig, where: string): void {
  if (c.pagesToScanMin > c.pagesToScanMax) {
    throw new ConfigError(`${where}: key "pagesToScanMin" (${c.pagesToScanMin}) must not exceed "pagesToScanMax" (${c.pagesToScanMax})`);
  }
  if (c.sleepMillisecs > c.sleepMillisecsMax) {
    throw new ConfigError(`${where}: key "sleepMillisecs" (${c.sleepMillisecs}) must not exceed "sleepMillisecsMax" (${c.sleepMillisecsMax})`);
  }
}

export function parseListen(text: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

/** ksmtuned's keys as agent settings; KSM_SLEEP_MSEC is scaled by RAM the way ksmtuned does it. */
export function fromKsmtuned(conf: KsmtunedConf, memTotalKiB: number): Partial<AgentConfig> {
  const out: Partial<AgentConfig> = {};
  const v = conf.values;
  const where = (key: string) => `${conf.path}: ${key}`;
  if (v.KSM_THRES_COEF !== undefined) out.thresholdPercent = num(0, 100, true)(v.KSM_THRES_COEF, where('KSM_THRES_COEF')) as number;
  if (v.KSM_THRES_CONST !== undefined) out.thresholdMinKiB = num(0, Number.MAX_SAFE_INTEGER, true)(v.KSM_THRES_CONST, where('KSM_THRES_CONST')) as number;
  if (v.KSM_NPAGES_MIN !== undefined) out.pagesToScanMin = num(1, 1_000_000, true)(v.KSM_NPAGES_MIN, where('KSM_NPAGES_MIN')) as number;
  if (v.KSM_NPAGES_MAX !== undefined) out.pagesToScanMax = num(1, 1_000_000, true)(v.KSM_NPAGES_MAX, where('KSM_NPAGES_MAX')) as number;
  if (v.KSM_SLEEP_MSEC !== undefined) {
    const base = num(1, 60_000, true)(v.KSM_SLEEP_MSEC, where('KSM_SLEEP_MSEC')) as number;
    // ksmtuned: sleep = KSM_SLEEP_MSEC × 16 GiB / MemTotal (integer), at least 10 ms.
    out.sleepMillisecs = Math.max(10, Math.floor((base * 16 * 1024 * 1024) / Math.max(1, memTotalKiB)));
  }
  return out;
}

export interface LoadedConfig {
  config: AgentConfig;
  /** Which file set each key that is not a default (for the start-up log). */
  sources: Partial<Record<keyof AgentConfig, string>>;
  configPath?: string;
  ksmtuned?: KsmtunedConf;
}

export interface LoadOptions {
  /** The JSON file; when not given, DEFAULT_CONFIG_PATH is read if it exists. */
  path?: string;
  /** Overrides from the command line (already typed). */
  overrides?: Record<string, unknown>;
  memTotalKiB: number;
}

async function readJson(file: string, required: boolean): Promise<unknown> {
  const text = await readOwnFile({ path: file, what: 'the config file' });
  if (text === undefined && !required) return undefined;
  if (text === undefined) throw new ConfigError(`config file ${file} does not exist: create it (see README.md, section ksm-agent) or leave out --config`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}; fix the syntax`);
  }
}

export async function loadConfig(opts: LoadOptions): Promise<LoadedConfig> {
  const file = opts.path ?? DEFAULT_CONFIG_PATH;
  const raw = await readJson(file, opts.path !== undefined);
  const fromJson = raw === undefined ? {} : validatePartial(raw, `config ${file}`);
  const fromFlags = validatePartial(opts.overrides ?? {}, 'command line');
  const confPath = fromFlags.ksmtunedConf !== undefined ? fromFlags.ksmtunedConf : fromJson.ksmtunedConf !== undefined ? fromJson.ksmtunedConf : DEFAULTS.ksmtunedConf;
  const ksmtuned = confPath === null ? undefined : await readKsmtunedConf(confPath);
  const fromConf = ksmtuned === undefined ? {} : fromKsmtuned(ksmtuned, opts.memTotalKiB);

  const config: AgentConfig = { ...DEFAULTS, ...fromConf, ...fromJson, ...fromFlags };
  checkWhole(config, raw === undefined ? 'configuration' : `config ${file}`);
  const sources: Partial<Record<keyof AgentConfig, string>> = {};
  for (const k of Object.keys(fromConf) as (keyof AgentConfig)[]) sources[k] = ksmtuned?.path ?? 'ksmtuned.conf';
  for (const k of Object.keys(fromJson) as (keyof AgentConfig)[]) sources[k] = file;
  for (const k of Object.keys(fromFlags) as (keyof AgentConfig)[]) sources[k] = 'command line';
  const out: LoadedConfig = { config, sources };
  if (raw !== undefined) out.configPath = file;
  if (ksmtuned !== undefined) out.ksmtuned = ksmtuned;
  return out;
}

/** The VM policy for a VM label, or an empty one. */
export function vmPolicy(config: Pick<AgentConfig, 'vms'>, label: string): VmPolicy {
  return config.vms[label] ?? {};
}

/** ksmtuned keys documented with the agent setting each one maps to. */
export const KSMTUNED_MAPPING = KSMTUNED_KEYS;
