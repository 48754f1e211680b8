// Reads ksmtuned's /etc/ksmtuned.conf (a shell file of KEY=value lines that ksmtuned sources), so
// a host moving from ksmtuned keeps its threshold and scan bounds. Only plain assignments are
// understood; anything else is reported with its line number rather than guessed at.
import { ConfigError } from './config-error.js';
import { readOwnFile } from '../safe-files.js';

/** The ksmtuned keys and the agent setting each one feeds (see README.md, section ksm-agent). */
export const KSMTUNED_KEYS = {
  KSM_THRES_COEF: 'thresholdPercent',
  KSM_THRES_CONST: 'thresholdMinKiB',
  KSM_NPAGES_MIN: 'pagesToScanMin',
  KSM_NPAGES_MAX: 'pagesToScanMax',
  KSM_SLEEP_MSEC: 'sleepMillisecs',
} as const;

/** Keys ksmtuned knows that the agent reads but does not use, and why (logged once at start). */
export const KSMTUNED_IGNORED: Record<string, string> = {
  KSM_MONITOR_INTERVAL: 'the agent measures every intervalSeconds instead of once a minute',
  KSM_NPAGES_BOOST: 'the agent ramps by measured yield and ksmd CPU, not by fixed steps',
  KSM_NPAGES_DECAY: 'the agent ramps by measured yield and ksmd CPU, not by fixed steps',
  LOGFILE: 'the agent logs to stderr (the journal)',
  DEBUG: 'the agent logs to stderr (the journal)',
};

export type KsmtunedKey = keyof typeof KSMTUNED_KEYS;

export interface KsmtunedConf {
  path: string;
  values: Partial<Record<KsmtunedKey, number>>;
  ignored: string[];
}

/** Parses the text of a ksmtuned.conf; `path` names the file in errors. */
export function parseKsmtunedConf(text: string, path: string): KsmtunedConf {
  const out: KsmtunedConf = { path, values: {}, ignored: [] };
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m === null) {
      throw new ConfigError(`${path} line ${i + 1}: expected KEY=value as ksmtuned.conf has it, got ${JSON.stringify(raw.trim())}`);
    }
    const key = m[1] as string;
    const value = (m[2] as string).trim().replace(/^(["'])(.*)\1$/, '$2');
    if (key in KSMTUNED_KEYS) {
      if (!/^-?\d+$/.test(value)) {
        throw new ConfigError(`${path} line ${i + 1}: ${key} must be an integer (ksmtuned does integer shell arithmetic), got ${JSON.stringify(value)}`);
      }
      out.values[key as KsmtunedKey] = Number(value);
    } else if (key in KSMTUNED_IGNORED) {
      out.ignored.push(key);
    }
  });
  return out;
}

/** Reads a ksmtuned.conf; undefined when the file does not exist (ksmtuned not installed). */
export async function readKsmtunedConf(path: string): Promise<KsmtunedConf | undefined> {
  const text = await readOwnFile({ path, what: 'the ksmtuned configuration' });
  return text === undefined ? undefined : parseKsmtunedConf(text, path);
}
