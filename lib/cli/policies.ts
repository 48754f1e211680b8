// The tenants and opt-outs of the agent config, for the read commands (vms, estimate): the
// default config is read when it exists; a path given explicitly must exist.
import { loadConfig } from '../agent/config.js';
import type { AgentConfig } from '../agent/config.js';
import { readMemory } from '../sample.js';

export async function loadVmPolicies(path?: string): Promise<Pick<AgentConfig, 'vms'>> {
  const mem = await readMemory();
  const loaded = await loadConfig({ memTotalKiB: Math.floor(mem.totalBytes / 1024), ...(path === undefined ? {} : { path }) });
  return { vms: loaded.config.vms };
}
