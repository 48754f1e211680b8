// npm run bench:seed [-- --runs DIR --out DIR --table NAME --measure missing|none --plots on|off]:
// the seed tables of issue 14. First, unless --measure none, every run the chosen tables need that
// bench:seed:run can make and DIR lacks is made, one after another (each a few minutes of two TCG
// guests; KSM settings saved and restored by the runner); then the report from DIR's run files
// (scripts/bench/seed-report.ts): OUT/report.md with the published tables and ours side by side,
// the PNG plots beside it (pages shared over time, host cache over time, hit ratios), the runs
// still missing and the command for each; the one JSON line (issue 14's names) is printed last.
// One sub-command per table: npm run bench:seed:lookahead|cache|bonnie|zipf|wss (= --table NAME).
//
//   --runs PATH     the directory of run files (default seed-runs; measured runs are written
//                   there), or with --measure none any run files and directories (repeatable)
//   --out DIR       where report.md and the PNGs go (default: seed-report; created)
//   --table NAME    lookahead, cache, bonnie, zipf, wss or all (repeatable; default: all)
//   --measure WHAT  missing (default): make the runs DIR lacks first; none: report only
//   --plots off     no PNGs (no Chromium needed)
//   --zipf-model off  no cache model for the Zipf table's truly exclusive policy (zipf-model.ts:
//                   by default it runs fio on this host for the guests' reads, a few seconds)
//   --kernel FILE   the patched kernel's lookahead figures beside the engine's (seed-kernel.ts): a
//                   test:kernel log or its checks boot's serial log (default: test-kernel-measure.log
//                   in a --runs directory, when there is one)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TABLES, buildReport, hitRatioOf, loadRuns, pick, requiredRuns, runFileName, runnerArgs, type TableName } from './seed-report.js';
import { zipfModels } from './zipf-model.js';
import { renderPlots } from './seed-plots.js';
import { kernelLookahead, parseKernelMeasures } from './seed-kernel.js';

/** The default --kernel file's name in a runs directory. */
const KERNEL_LOG = 'test-kernel-measure.log';

function fail(message: string, code = 2): never {
  process.stderr.write(`bench:seed: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let values: { runs?: string[]; out?: string; table?: string[]; plots?: string; measure?: string; 'zipf-model'?: string; kernel?: string };
  try {
    ({ values } = parseArgs({
      options: { runs: { type: 'string', multiple: true }, out: { type: 'string' }, table: { type: 'string', multiple: true }, plots: { type: 'string' }, measure: { type: 'string' }, 'zipf-model': { type: 'string' }, kernel: { type: 'string' } },
      strict: true,
    }));
  } catch (e) {
    fail(`${(e as Error).message}; see the options at the top of scripts/bench/seed-report-cli.ts`);
  }
  const tableArgs = values.table ?? ['all'];
  for (const t of tableArgs) if (t !== 'all' && !(TABLES as readonly string[]).includes(t)) fail(`--table must be one of ${TABLES.join(', ')} or all, got "${t}"`);
  const tables: TableName[] = tableArgs.includes('all') ? [...TABLES] : (tableArgs as TableName[]);
  const plotsOn = (values.plots ?? 'on') !== 'off';
  if (values.plots !== undefined && !['on', 'off'].includes(values.plots)) fail(`--plots must be on or off, got "${values.plots}"`);
  const modelOn = (values['zipf-model'] ?? 'on') !== 'off';
  if (values['zipf-model'] !== undefined && !['on', 'off'].includes(values['zipf-model'])) fail(`--zipf-model must be on or off, got "${values['zipf-model']}"`);
  const measure = values.measure ?? 'missing';
  if (!['missing', 'none'].includes(measure)) fail(`--measure must be missing or none, got "${measure}"`);
  const sources = values.runs ?? ['seed-runs'];
  const out = values.out ?? 'seed-report';
  if (measure === 'missing') {
    const dir = sources[0] as string;
    if (sources.length !== 1) fail('--measure missing writes its runs into one --runs directory; give one, or --measure none');
    mkdirSync(dir, { recursive: true });
    const have = loadRuns([dir]).runs;
    const runner = path.join(__dirname, 'seed.js');
    for (const { workload, variant } of requiredRuns(tables)) {
      const args = runnerArgs(workload, variant);
      if (args === null || pick(have, workload, variant) !== undefined) continue;
      const file = path.join(dir, runFileName(workload, variant));
      process.stderr.write(`bench:seed: measuring ${workload} (${variant}) into ${file}\n`);
      const r = spawnSync(process.execPath, [runner, ...args, '--out', file], { stdio: ['ignore', 'inherit', 'inherit'] });
      if (r.status !== 0) process.stderr.write(`bench:seed: the ${workload} (${variant}) run failed (exit ${r.status ?? r.signal}); ${existsSync(file) ? 'its samples are in the report' : 'no file'}\n`);
    }
  }

  let loaded;
  try {
    loaded = loadRuns(sources);
  } catch (e) {
    fail((e as Error).message);
  }
  for (const s of loaded.skipped) process.stderr.write(`skipped ${s}\n`);
  if (loaded.runs.length === 0) fail(`no bench:seed:run files in ${sources.join(', ')}: make some with npm run bench:seed:run -- --workload NAME --out FILE`, 3);

  const models = modelOn && tables.includes('zipf') ? zipfModels(loaded.runs, hitRatioOf) : undefined;
  for (const m of models ?? []) if ('error' in m) process.stderr.write(`bench:seed: no Zipf cache model${m.setting}: ${m.error}\n`);
  const kernelFile = values.kernel ?? sources.map((s) => path.join(s, KERNEL_LOG)).find((f) => existsSync(f) && statSync(f).isFile());
  let kernel;
  if (kernelFile !== undefined) {
    let text = '';
    try {
      text = readFileSync(kernelFile, 'utf8');
    } catch (e) {
      fail(`--kernel ${kernelFile}: cannot read it (${(e as Error).message}); give a test:kernel log`);
    }
    kernel = { source: kernelFile, rows: kernelLookahead(parseKernelMeasures(text)) };
  }
  const report = buildReport(loaded.runs, { tables, sources, ...(models !== undefined ? { zipfModels: models } : {}), ...(kernel !== undefined ? { kernel } : {}) });
  mkdirSync(out, { recursive: true });
  const md = path.join(out, 'report.md');
  writeFileSync(md, report.markdown);
  const pngs = plotsOn ? await renderPlots(report.plots, out) : [];
  process.stderr.write(`${md}: ${tables.join(', ')} from ${loaded.runs.length} runs; ${pngs.length} PNGs; ${report.missing.length} runs missing\n`);
  for (const m of report.missing) process.stderr.write(`  missing: ${m}\n`);
  process.stdout.write(`${JSON.stringify(report.json)}\n`);
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err), 1));
