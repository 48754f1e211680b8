// The workloads the seed benchmarks run inside the Debian guests (scripts/qemu/debian/): each is
// a /bin/sh (dash) script sent over the control channel, bounded by its own deadline, whose last
// stdout line is "SEED_RESULT {json}"; parseResult() turns that into numbers. wss is the one
// workload the host drives instead, between the estimator's passes (seed-wss.ts).
export const WORKLOADS = ['boot', 'compile', 'bonnie', 'fio-zipf', 'desktop', 'wss'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];
/** The workloads that are a script run in the guests. */
export type ScriptWorkload = Exclude<WorkloadName, 'wss'>;

export interface WorkloadOptions {
  /** How long the workload runs (its deadline inside the guest). */
  seconds: number;
  /** Guest RAM, for bonnie++ -r. */
  memMiB: number;
  /** Size of bonnie++'s and fio's file in the guest. */
  fileMiB: number;
  /** fio's Zipf exponent (random_distribution=zipf:THETA). */
  zipfTheta: number;
}

/** The two guests every seed run boots. */
export const SEED_GUESTS = ['seed-a', 'seed-b'] as const;
/** QEMU's memory beyond guest RAM under TCG with a 128 MiB translation cache (measured ~200 MiB). */
export const QEMU_OVERHEAD_MIB = 256;

/**
 * The tightest cgroup limit a run takes (--limit tight): the guests' RAM and QEMU's own, with no
 * room kept for the host page cache, which then lives on what the guests leave unused.
 */
export function tightLimitMiB(memMiB: number): number {
  return SEED_GUESTS.length * (memMiB + QEMU_OVERHEAD_MIB);
}

export const DEFAULT_SECONDS: Record<WorkloadName, number> = { boot: 60, compile: 300, bonnie: 600, 'fio-zipf': 120, desktop: 120, wss: 30 };

/** Extra seconds past the deadline the host waits before killing the command (file layout, teardown). */
export const GRACE_SECONDS: Record<ScriptWorkload, number> = { boot: 10, compile: 30, bonnie: 60, 'fio-zipf': 300, desktop: 30 };

export function isWorkload(s: string): s is WorkloadName {
  return (WORKLOADS as readonly string[]).includes(s);
}

/** fio's file in the guests; fio seeds its Zipf generator from the name (zipf-trace.ts uses it too). */
export const ZIPF_FILE = '/var/tmp/zipf.dat';

const DEADLINE = (s: number): string => `end=$(( $(date +%s) + ${s} ))`;

export function workloadScript(name: ScriptWorkload, o: WorkloadOptions): string {
  switch (name) {
    case 'boot':
      // The guests booted while the host sampled; the window after READY is the idle system.
      return `sleep ${o.seconds}; echo 'SEED_RESULT {}'`;
    case 'compile':
      // Lua 5.4 (Debian's lua5.4 source package, upstream tarball) built from a clean tree, again
      // and again until the deadline; the build in flight at the deadline is stopped.
      return `set -u
${DEADLINE(o.seconds)}
src=$(ls /opt/samepage/src/lua5.4_*.orig.tar.* | head -1)
[ -f "$src" ] || { echo "SEED_ERROR no lua source in /opt/samepage/src"; exit 1; }
builds=0; secs=""
while [ "$(date +%s)" -lt "$end" ]; do
  rm -rf /root/build && mkdir -p /root/build && cd /root/build || exit 1
  tar xf "$src" --strip-components=1 || { echo "SEED_ERROR tar $src failed"; exit 1; }
  left=$(( end - $(date +%s) )); [ "$left" -gt 0 ] || break
  t0=$(date +%s.%N)
  if timeout "$left" make -s linux >/tmp/build.log 2>&1; then
    t1=$(date +%s.%N)
    builds=$((builds + 1))
    secs="$secs\${secs:+,}$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
  else
    rc=$?
    [ "$rc" = 124 ] || { tail -5 /tmp/build.log; echo "SEED_ERROR make failed with $rc"; exit 1; }
    break
  fi
done
[ -x /root/build/src/lua ] && /root/build/src/lua -e 'print("lua ok")'
echo "SEED_RESULT {\\"builds\\":$builds,\\"build_seconds\\":[$secs]}"`;
    case 'bonnie':
      // bonnie++ -q prints its CSV line on stdout; -n 0 skips the small-file tests.
      return `set -u
mkdir -p /var/tmp/bonnie
timeout ${o.seconds} bonnie++ -d /var/tmp/bonnie -s ${o.fileMiB} -r ${o.memMiB} -n 0 -u root -q -x 1 >/tmp/bonnie.csv 2>/tmp/bonnie.err
rc=$?
rm -rf /var/tmp/bonnie
[ "$rc" = 0 ] || { tail -3 /tmp/bonnie.err; echo "SEED_ERROR bonnie++ exited with $rc (124: not done within ${o.seconds} s)"; exit 1; }
echo "SEED_RESULT {\\"csv\\":\\"$(tail -1 /tmp/bonnie.csv)\\"}"`;
    case 'fio-zipf':
      // Buffered 4 KiB random reads with a Zipf popularity over a file larger than the guest's
      // free page cache, so the guest misses go to the virtual disk and the host cache.
      return `set -u
timeout ${o.seconds + GRACE_SECONDS['fio-zipf'] - 10} fio --name=zipf --filename=${ZIPF_FILE} --size=${o.fileMiB}M --rw=randread \\
  --random_distribution=zipf:${o.zipfTheta} --bs=4k --ioengine=psync --runtime=${o.seconds} --time_based \\
  --output-format=json >/tmp/fio.json 2>/tmp/fio.err
rc=$?
[ "$rc" = 0 ] || { tail -3 /tmp/fio.err; echo "SEED_ERROR fio exited with $rc"; exit 1; }
echo "SEED_RESULT $(tr -d '\\n' </tmp/fio.json)"`;
    case 'desktop':
      // Xvfb and X clients that load fonts and libraries: xclock/xeyes/xlogo stay up; xterm
      // (Xft with DejaVu, through fontconfig and freetype), xfd over core fonts, and xcalc come
      // and go until the deadline.
      return `set -u
export DISPLAY=:1
Xvfb :1 -screen 0 1280x800x24 -nolisten tcp >/tmp/xvfb.log 2>&1 &
xvfb=$!
i=0
until xdpyinfo >/dev/null 2>&1; do
  sleep 0.5; i=$((i + 1))
  [ "$i" -lt 240 ] || { tail -3 /tmp/xvfb.log; echo "SEED_ERROR Xvfb did not come up"; exit 1; }
done
${DEADLINE(o.seconds)}
# (pids kept by hand: "jobs -p" in a command substitution sees no jobs in dash)
xclock -update 1 & p1=$!
xeyes & p2=$!
xlogo & p3=$!
xlsfonts 2>/dev/null | grep -E '^-' | head -200 >/tmp/fonts
nfonts=$(wc -l </tmp/fonts)
launches=0; n=0
while [ "$(date +%s)" -lt "$end" ]; do
  n=$((n + 1))
  xterm -fa 'DejaVu Sans Mono' -fs 11 -e sh -c 'ls -lR /usr/share/X11 >/dev/null; sleep 2' &
  t=$!
  if [ "$nfonts" -gt 0 ]; then xfd -fn "$(sed -n "$(( (n % nfonts) + 1 ))p" /tmp/fonts)" & f=$!; else f=""; fi
  xcalc & c=$!
  sleep 3
  kill $t $f $c 2>/dev/null; wait $t $f $c 2>/dev/null
  launches=$((launches + 3))
done
kill $p1 $p2 $p3 2>/dev/null; wait $p1 $p2 $p3 2>/dev/null
kill $xvfb 2>/dev/null; wait $xvfb 2>/dev/null
echo "SEED_RESULT {\\"launches\\":$launches,\\"fonts\\":$nfonts}"`;
  }
}

export type WorkloadResult = Record<string, number | string | number[] | null>;

/**
 * bonnie++ 2.0 CSV (format 1.98) columns we report: format, version, name, concurrency, seed,
 * file_size, chunk_size, seeks, seek_proc_count, then putc, putc_cpu, put_block, ... by index.
 */
const BONNIE_FIELDS: Record<string, number> = {
  putc_kps: 9,
  put_block_kps: 11,
  rewrite_kps: 13,
  getc_kps: 15,
  get_block_kps: 17,
  seeks_per_s: 19,
};

/** The numbers a workload printed, or an Error saying what the guest reported. */
export function parseResult(name: ScriptWorkload, stdout: string): WorkloadResult {
  const lines = stdout.split('\n');
  const err = lines.find((l) => l.startsWith('SEED_ERROR '));
  if (err) throw new Error(`${name}: ${err.slice('SEED_ERROR '.length)}\n${stdout.slice(-600)}`);
  const line = lines.reverse().find((l) => l.startsWith('SEED_RESULT '));
  if (line === undefined) throw new Error(`${name}: no SEED_RESULT line in the guest's output:\n${stdout.slice(-600)}`);
  const raw = JSON.parse(line.slice('SEED_RESULT '.length)) as Record<string, unknown>;
  if (name === 'bonnie') {
    const f = String(raw['csv']).split(',');
    if (f.length < 20) throw new Error(`bonnie: unexpected CSV line "${String(raw['csv'])}"`);
    const out: WorkloadResult = { bonnie_version: f[1] ?? '', file_size: f[5] ?? '' };
    for (const [k, i] of Object.entries(BONNIE_FIELDS)) {
      const v = f[i] ?? '';
      // "+++++": done too fast for bonnie++ to time (the file fit in a cache): no figure.
      if (/^\++$/.test(v)) out[k] = null;
      else if (v !== '' && Number.isFinite(Number(v))) out[k] = Number(v);
      else throw new Error(`bonnie: column ${i} (${k}) is "${v}" in "${String(raw['csv'])}"`);
    }
    return out;
  }
  if (name === 'fio-zipf') {
    const job = (raw['jobs'] as { read: { iops: number; bw: number; clat_ns: { mean: number } } }[] | undefined)?.[0];
    if (!job) throw new Error('fio-zipf: no jobs[0] in fio JSON');
    return { read_iops: job.read.iops, read_kibps: job.read.bw, read_clat_us: job.read.clat_ns.mean / 1000 };
  }
  const out: WorkloadResult = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v === 'number' || typeof v === 'string') out[k] = v;
    else if (Array.isArray(v)) out[k] = v.map(Number);
  }
  return out;
}
