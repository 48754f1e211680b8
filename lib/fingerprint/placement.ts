// The placement advisor: which VMs to put together so KSM saves the most, from their sketches.
//
// Objective: Σ over hosts of the predicted pages KSM frees on that host (estimate.ts), subject to a
// capacity per host counted in configured guest RAM (-m), the figure a scheduler reserves.
// Search: greedy, then local search.
//   - Greedy: VMs largest first; each goes to the host where it adds the most saving and fits (on
//     a tie, the emptier host), so VMs that share contents gather until a host is full.
//   - Local search: from there, the single best improving step among moving one VM to another
//     host and swapping two VMs of different hosts, repeated until no step improves (or a round
//     limit). It finds what greedy's order misses (a VM placed before its best partner arrived).
// While searching, groups are estimated from the first `searchEntries` entries of each sketch (a
// bottom-k sketch cut to fewer entries is still a valid bottom-k sketch, with a larger error) and
// cached by member set; the current and proposed placements are then estimated with every entry.
// The proposed groups are given the names of the current hosts that keep most of their guest RAM
// in place, so the list of moves is short.
import { InvalidArgumentError } from '../errors.js';
import { escapeText } from '../escape.js';
import { DEFAULT_KSM_MODEL, checkSameKey, estimateGroup } from './estimate.js';
import type { GroupEstimate, KsmModel } from './estimate.js';
import { PAGE_BYTES } from './sketch.js';
import type { Sketch } from './sketch.js';

export const PLACEMENT_METHOD = 'greedy, then local search over single moves and pairwise swaps';

export interface PlacementOptions {
  /** Hosts of the proposed placement; default: the hosts the sketches came from. */
  hosts?: number;
  /** Guest RAM (Σ -m sizes) one host may hold; default: the most any host holds now. */
  capacityBytes?: number;
  model?: KsmModel;
  /** Sketch entries used while searching (default 4096). */
  searchEntries?: number;
  /** Most local-search steps (default 1000). */
  maxSteps?: number;
}

export interface HostPlan {
  host: string;
  /** Indices into the sketches. */
  members: number[];
  ramBytes: number;
  estimate: GroupEstimate;
}

export interface Placement {
  hosts: HostPlan[];
  savedPages: number;
  savedBytes: number;
  /** Σ of the hosts' standard errors in quadrature. */
  stdErrPages: number;
}

export interface Move {
  vm: number;
  name: string;
  from: string;
  to: string;
}

export interface PlacementAdvice {
  method: string;
  capacityBytes: number;
  current: Placement;
  proposed: Placement;
  moves: Move[];
  /** Local-search steps taken after greedy. */
  steps: number;
}

function placementOf(sketches: readonly Sketch[], hosts: readonly string[], groups: readonly number[][], model: KsmModel): Placement {
  const plans = hosts.map((host, h): HostPlan => {
    const members = [...(groups[h] ?? [])].sort((a, b) => a - b);
    return { host, members, ramBytes: members.reduce((a, i) => a + (sketches[i] as Sketch).ramBytes, 0), estimate: estimateGroup(sketches, members, model) };
  });
  const savedPages = plans.reduce((a, p) => a + p.estimate.savedPages, 0);
  return {
    hosts: plans,
    savedPages,
    savedBytes: savedPages * PAGE_BYTES,
    stdErrPages: Math.round(Math.sqrt(plans.reduce((a, p) => a + p.estimate.stdErrPages ** 2, 0))),
  };
}

/** Predicts the current placement's saving and proposes a better one. */
export function advisePlacement(sketches: readonly Sketch[], opts: PlacementOptions = {}): PlacementAdvice {
  if (sketches.length === 0) throw new InvalidArgumentError('no sketches to place: pass sketch files made by ksm-agent fingerprint');
  checkSameKey(sketches);
  const model = opts.model ?? DEFAULT_KSM_MODEL;
  const currentHosts = [...new Set(sketches.map((s) => s.host))];
  const currentGroups = currentHosts.map((h) => sketches.flatMap((s, i) => (s.host === h ? [i] : [])));
  const hostCount = opts.hosts ?? currentHosts.length;
  if (!Number.isInteger(hostCount) || hostCount < 1) throw new InvalidArgumentError(`hosts must be a positive whole number, not ${String(hostCount)}`);
  const ram = sketches.map((s) => s.ramBytes);
  const load = (g: readonly number[]): number => g.reduce((a, i) => a + (ram[i] as number), 0);
  const capacity = opts.capacityBytes ?? Math.max(...currentGroups.map(load));
  const biggest = Math.max(...ram);
  if (biggest > capacity) {
    const i = ram.indexOf(biggest);
    throw new InvalidArgumentError(`VM "${escapeText((sketches[i] as Sketch).name)}" has ${biggest} bytes of guest RAM, more than a host's capacity of ${capacity}: raise the capacity`);
  }
  if (load(sketches.map((_, i) => i)) > capacity * hostCount) {
    throw new InvalidArgumentError(`the VMs' guest RAM (${load(sketches.map((_, i) => i))} bytes) does not fit on ${hostCount} hosts of ${capacity} bytes: add hosts or raise the capacity`);
  }

  const searchEntries = opts.searchEntries ?? 4096;
  const cache = new Map<string, number>();
  const saved = (g: readonly number[]): number => {
    if (g.length === 0) return 0;
    const key = [...g].sort((a, b) => a - b).join(',');
    let v = cache.get(key);
    if (v === undefined) {
      v = estimateGroup(sketches, g, model, searchEntries).savedPages;
      cache.set(key, v);
    }
    return v;
  };

  // Greedy.
  const groups: number[][] = Array.from({ length: hostCount }, () => []);
  const order = sketches.map((_, i) => i).sort((a, b) => (ram[b] as number) - (ram[a] as number) || a - b);
  for (const vm of order) {
    let best: { h: number; gain: number; load: number } | undefined;
    for (let h = 0; h < hostCount; h++) {
      const g = groups[h] as number[];
      const l = load(g);
      if (l + (ram[vm] as number) > capacity) continue;
      const gain = saved([...g, vm]) - saved(g);
      if (best === undefined || gain > best.gain || (gain === best.gain && l < best.load)) best = { h, gain, load: l };
    }
    if (best === undefined) {
      throw new InvalidArgumentError(`no host has room for VM "${escapeText((sketches[vm] as Sketch).name)}" (${ram[vm]} bytes) at a capacity of ${capacity} bytes: add hosts or raise the capacity`);
    }
    (groups[best.h] as number[]).push(vm);
  }

  // Local search: the best improving move or swap, until none improves.
  const maxSteps = opts.maxSteps ?? 1000;
  let steps = 0;
  const without = (g: readonly number[], vm: number): number[] => g.filter((x) => x !== vm);
  for (; steps < maxSteps; steps++) {
    let best: { gain: number; apply: () => void } | undefined;
    for (let a = 0; a < hostCount; a++) {
      const ga = groups[a] as number[];
      for (const vm of ga) {
        const gaLess = without(ga, vm);
        for (let b = 0; b < hostCount; b++) {
          if (b === a) continue;
          const gb = groups[b] as number[];
          const base = saved(ga) + saved(gb);
          if (load(gb) + (ram[vm] as number) <= capacity) {
            const gain = saved(gaLess) + saved([...gb, vm]) - base;
            if (gain > 0 && (best === undefined || gain > best.gain)) best = { gain, apply: () => ((groups[a] = gaLess), (groups[b] = [...gb, vm])) };
          }
          if (b < a) continue; // each swap once
          for (const other of gb) {
            const na = [...gaLess, other];
            const nb = [...without(gb, other), vm];
            if (load(na) > capacity || load(nb) > capacity) continue;
            const gain = saved(na) + saved(nb) - base;
            if (gain > 0 && (best === undefined || gain > best.gain)) best = { gain, apply: () => ((groups[a] = na), (groups[b] = nb)) };
          }
        }
      }
    }
    if (best === undefined) break;
    best.apply();
  }

  const names = nameGroups(groups, currentHosts, currentGroups, ram);
  const current = placementOf(sketches, currentHosts, currentGroups, model);
  const proposed = placementOf(sketches, names, groups, model);
  const hostOf = new Map<number, string>();
  proposed.hosts.forEach((p) => p.members.forEach((i) => hostOf.set(i, p.host)));
  const moves: Move[] = sketches.flatMap((s, i) => {
    const to = hostOf.get(i) as string;
    return to === s.host ? [] : [{ vm: i, name: s.name, from: s.host, to }];
  });
  return { method: PLACEMENT_METHOD, capacityBytes: capacity, current, proposed, moves, steps };
}

/**
 * Names the proposed groups after current hosts so that the most guest RAM stays where it is
 * (exhaustive for up to 8 groups, greedy beyond); groups left over are "new-host-N".
 */
function nameGroups(groups: readonly number[][], currentHosts: readonly string[], currentGroups: readonly number[][], ram: readonly number[]): string[] {
  const kept = (g: number, h: number): number => (groups[g] as number[]).filter((i) => (currentGroups[h] as number[]).includes(i)).reduce((a, i) => a + (ram[i] as number), 0);
  const assignment: (number | undefined)[] = groups.map(() => undefined);
  if (groups.length <= 8 && currentHosts.length <= 8) {
    let bestScore = -1;
    let bestAssign: (number | undefined)[] = [];
    const used = new Set<number>();
    const cur: (number | undefined)[] = [];
    const walk = (g: number, score: number): void => {
      if (g === groups.length) {
        if (score > bestScore) {
          bestScore = score;
          bestAssign = [...cur];
        }
        return;
      }
      for (let h = 0; h < currentHosts.length; h++) {
        if (used.has(h)) continue;
        used.add(h);
        cur[g] = h;
        walk(g + 1, score + kept(g, h));
        used.delete(h);
      }
      // Fewer current hosts than groups: this group may take a new host.
      if (groups.length - g > currentHosts.length - used.size) {
        cur[g] = undefined;
        walk(g + 1, score);
      }
    };
    walk(0, 0);
    bestAssign.forEach((h, g) => (assignment[g] = h));
  } else {
    const pairs = groups.flatMap((_, g) => currentHosts.map((_h, h) => ({ g, h, v: kept(g, h) }))).sort((a, b) => b.v - a.v);
    const usedH = new Set<number>();
    for (const p of pairs) {
      if (assignment[p.g] !== undefined || usedH.has(p.h)) continue;
      assignment[p.g] = p.h;
      usedH.add(p.h);
    }
  }
  let fresh = 0;
  return assignment.map((h) => (h === undefined ? `new-host-${++fresh}` : (currentHosts[h] as string)));
}
