// lib/vms.ts and lib/guest-ram.ts against real, paused QEMU processes (TCG, no guest kernel).
// Other QEMU processes may run on the host; these tests look only at the ones they start, and kill
// exactly those, by pid, in test.after.always.
import test from 'ava';
import { mkdir, mkdtemp, realpath, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AmbiguousError, NotFoundError, SamepageError } from '../lib/errors.js';
import { findGuestRam } from '../lib/guest-ram.js';
import { readMaps, readSmaps } from '../lib/procfs.js';
import { cmdlineDisksOf, parseQemuArgs, parseQemuSize, ramBytesOf, splitOptionValue } from '../lib/qemu-cmdline.js';
import { findVm, listVms } from '../lib/vms.js';
import type { Vm } from '../lib/vms.js';
import { runNodeAsNobody } from './helpers/processes.js';
import { hmp, qemuBinary, startQemu, stopAllQemu } from './helpers/qemu.js';
import type { Qemu } from './helpers/qemu.js';

const MiB = 1024 * 1024;

let dir = '';
let q1: Qemu; // alpha: -name guest=alpha, -m 256, -drive, monitor socket
let q2: Qemu; // beta: bare -name, -m size=192M,slots=..., drive through a symlink
let q3: Qemu; // "gam,ma": escaped comma, mem-merge=off, -blockdev JSON
let q4: Qemu; // rel: no -m (QEMU's 128 MiB), relative -cdrom path

test.before(async () => {
  await qemuBinary();
  dir = await mkdtemp(path.join(os.tmpdir(), 'samepage-vms-'));
  for (const img of ['a.img', 'b.img', 'c.img', 'd.img', 'iso.img']) {
    await writeFile(path.join(dir, img), '');
    await truncate(path.join(dir, img), MiB);
  }
  await symlink(path.join(dir, 'b.img'), path.join(dir, 'link.img'));
  [q1, q2, q3, q4] = await Promise.all([
    startQemu(
      ['-name', 'guest=alpha,debug-threads=on', '-m', '256', '-drive', `file=${dir}/a.img,format=raw,if=virtio`,
        '-pidfile', `${dir}/alpha.pid`, '-monitor', `unix:${dir}/alpha.mon,server=on,wait=off`],
      256 * MiB,
    ),
    startQemu(['-name', 'beta', '-m', 'size=192M,slots=2,maxmem=1G', '-drive', `file=${dir}/link.img,format=raw,if=virtio`], 192 * MiB),
    startQemu(
      ['-name', 'guest=gam,,ma', '-m', '160M', '-machine', 'pc,mem-merge=off',
        '-blockdev', JSON.stringify({ driver: 'file', filename: `${dir}/c.img`, 'node-name': 'f0' }),
        '-blockdev', JSON.stringify({ driver: 'raw', file: 'f0', 'node-name': 'd0' }),
        '-device', 'virtio-blk-pci,drive=d0'],
      160 * MiB,
    ),
    startQemu(['-name', 'guest=rel', '-cdrom', 'iso.img'], 128 * MiB, { cwd: dir }),
  ]);
});

test.after.always(async () => {
  await stopAllQemu();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

function ours(vms: Vm[], q: Qemu): Vm {
  const vm = vms.find((v) => v.pid === q.pid);
  if (vm === undefined) throw new Error(`QEMU pid ${q.pid} not listed; listed: ${vms.map((v) => v.pid).join(', ')}`);
  return vm;
}

test('listVms finds each QEMU with its name, RAM, guest RAM range, mergeability and disks', async (t) => {
  const vms = await listVms();
  const real = (f: string): Promise<string> => realpath(path.join(dir, f));

  const alpha = ours(vms, q1);
  t.is(alpha.name, 'alpha');
  t.is(alpha.nameSource, 'cmdline');
  t.is(alpha.uid, 0);
  t.is(alpha.ramBytes, 256 * MiB);
  t.is(alpha.guestRam?.bytes, 256 * MiB);
  t.true(alpha.mergeable);
  t.true(alpha.memMerge);
  t.deepEqual(alpha.warnings, []);
  t.is(path.basename(alpha.exe ?? ''), 'qemu-system-x86_64');
  t.is(alpha.cmdline[0]?.endsWith('qemu-system-x86_64'), true);
  t.like(alpha.disks.find((d) => d.path === path.join(dir, 'a.img')), { source: 'cmdline', open: true, option: '-drive', format: 'raw' });
  t.is(typeof alpha.disks.find((d) => d.path === path.join(dir, 'a.img'))?.fd, 'number');
  t.false(alpha.disks.some((d) => d.path.endsWith('alpha.pid')), 'the pidfile is not a disk');

  const beta = ours(vms, q2);
  t.is(beta.name, 'beta');
  t.is(beta.ramBytes, 192 * MiB);
  t.is(beta.guestRam?.bytes, 192 * MiB);
  t.deepEqual(beta.disks.map((d) => [d.path, d.source, d.open]), [[await real('b.img'), 'cmdline', true]], 'symlink resolved, one entry');

  const gamma = ours(vms, q3);
  t.is(gamma.name, 'gam,ma');
  t.false(gamma.memMerge);
  t.is(gamma.guestRam?.bytes, 160 * MiB, 'found by MADV_DONTFORK when not mergeable');
  const gammaVma = (await readSmaps(q3.pid)).find((v) => v.start === gamma.guestRam?.start);
  t.false(gammaVma?.mergeable);
  t.like(gamma.disks.find((d) => d.path === path.join(dir, 'c.img')), { source: 'cmdline', open: true, option: '-blockdev' });

  const rel = ours(vms, q4);
  t.is(rel.name, 'rel');
  t.is(rel.ramBytes, 128 * MiB, "QEMU's default RAM");
  t.is(rel.guestRam?.bytes, 128 * MiB);
  t.like(rel.disks.find((d) => d.path === path.join(dir, 'iso.img')), { source: 'cmdline', option: '-cdrom', readOnly: true, open: true });
});

test('the guest RAM range is a mergeable private anonymous mapping in /proc/PID/maps of exactly the RAM size', async (t) => {
  const ram = await findGuestRam(q1.pid, 256 * MiB);
  t.is(ram.bytes, 256 * MiB);
  const maps = await readMaps(q1.pid);
  const vma = maps.find((m) => m.start === ram.start);
  t.truthy(vma, 'starts exactly at a VMA');
  t.is(vma?.bytes, 256 * MiB);
  t.like(vma, { read: true, write: true, exec: false, shared: false, anonymous: true, path: '' });
  t.true((await readSmaps(q1.pid)).find((v) => v.start === ram.start)?.mergeable);
  // The TCG code buffer is a bigger anonymous mapping; without the size it must still not win.
  t.true(maps.some((m) => m.exec && m.anonymous && m.bytes > 256 * MiB), 'the TCG buffer is there');
  t.deepEqual(await findGuestRam(q1.pid), ram);
  const wrong = await t.throwsAsync(findGuestRam(q1.pid, 300 * MiB), { instanceOf: NotFoundError });
  t.regex(wrong?.message ?? '', /no guest RAM of 314572800 bytes in process/);
});

test('a drive hot-added through the monitor is found among the open fds', async (t) => {
  const reply = await hmp(path.join(dir, 'alpha.mon'), `drive_add 0 if=none,id=hot0,file=${dir}/d.img,format=raw`);
  t.regex(reply, /OK/);
  const vm = await findVm(q1.pid);
  const hot = vm.disks.find((d) => d.path === path.join(dir, 'd.img'));
  t.like(hot, { source: 'fd', open: true });
  t.is(typeof hot?.fd, 'number');
});

test('findVm by name and by pid; unknown names and non-QEMU pids are NotFoundError', async (t) => {
  t.is((await findVm('beta')).pid, q2.pid);
  t.is((await findVm('gam,ma')).pid, q3.pid);
  t.is((await findVm(String(q4.pid))).name, 'rel');
  const none = await t.throwsAsync(findVm('no-such-vm-here'), { instanceOf: NotFoundError });
  t.regex(none?.message ?? '', /no QEMU VM named "no-such-vm-here"; running: .*alpha/);
  const notQemu = await t.throwsAsync(findVm(process.pid), { instanceOf: NotFoundError });
  t.regex(notQemu?.message ?? '', new RegExp(`process ${process.pid} .* is not a QEMU process`));
});

test('libvirt and Proxmox pid files name VMs, under a root directory option', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'samepage-vms-root-'));
  try {
    const libvirt = path.join(root, 'run/libvirt/qemu');
    const pve = path.join(root, 'var/run/qemu-server');
    const conf = path.join(root, 'etc/pve/qemu-server');
    for (const d of [libvirt, pve, conf]) await mkdir(d, { recursive: true });
    await writeFile(path.join(libvirt, 'delta.pid'), `${q2.pid}\n`);
    await writeFile(path.join(libvirt, 'delta.xml'), "<domstatus state='running' pid='1'>\n  <domain type='kvm' id='3'>\n    <name>delta &amp; co</name>\n  </domain>\n</domstatus>\n");
    await writeFile(path.join(libvirt, 'driver.pid'), `${process.pid}\n`);
    await writeFile(path.join(pve, '105.pid'), `${q3.pid}\n`);
    await writeFile(path.join(conf, '105.conf'), 'memory: 160\nname: web\n\n[before-upgrade]\nname: web-old\n');
    await writeFile(path.join(pve, '106.pid'), `${q4.pid}\n`);
    await writeFile(path.join(conf, '106.conf'), 'memory: 128\n');

    const vms = await listVms({ root, memory: false });
    t.like(ours(vms, q2), { name: 'delta & co', nameSource: 'libvirt' });
    t.like(ours(vms, q3), { name: 'web', nameSource: 'proxmox', vmid: 105 });
    t.like(ours(vms, q4), { name: '106', nameSource: 'proxmox', vmid: 106 });
    t.like(ours(vms, q1), { name: 'alpha', nameSource: 'cmdline' });
    t.is(ours(vms, q1).guestRam, undefined, 'memory: false skips smaps');
    t.is(ours(vms, q1).mergeable, undefined);
    t.is((await findVm('delta & co', { root })).pid, q2.pid);
    t.is((await findVm('web', { root })).vmid, 105);

    await writeFile(path.join(pve, '107.pid'), `${q1.pid}\n`);
    await writeFile(path.join(conf, '107.conf'), 'name: web\n');
    const twice = await t.throwsAsync(findVm('web', { root }), { instanceOf: AmbiguousError });
    t.regex(twice?.message ?? '', /2 QEMU processes are named "web".*pass the pid/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a non-root user lists no VM whose executable it cannot verify, and findVm says why', async (t) => {
  // Another user's /proc/PID/exe needs ptrace access: without it, argv and comm alone would have to
  // be trusted, and any process can name itself qemu-system-x86_64 (lib/qemu-exe.ts).
  const script = (lib: string): string => `
    const v = require(${JSON.stringify(path.join(lib, 'vms.js'))});
    Promise.all([v.listVms(), v.findVm(${q1.pid}).then(() => null, (e) => ({ code: e.code, message: e.message }))]).then(
      ([vms, byPid]) => console.log(JSON.stringify({ pids: vms.map((x) => x.pid), byPid })),
      (e) => console.log(JSON.stringify({ error: e.code, message: e.message })));`;
  const res = await runNodeAsNobody(script);
  t.is(res.code, 0, res.stderr);
  const out = JSON.parse(res.stdout) as { pids: number[]; byPid: { code: string; message: string } | null };
  t.true(Array.isArray(out.pids), res.stdout);
  for (const q of [q1, q2, q3, q4]) t.false(out.pids.includes(q.pid), `root's QEMU ${q.pid} is not listed to nobody`);
  t.is(out.byPid?.code, 'NOT_FOUND');
  t.regex(out.byPid?.message ?? '', new RegExp(`process ${q1.pid} .* is not a QEMU process: its executable cannot be read`));
});

test('QEMU command lines: escaped commas, sizes, memory backends and disk options', (t) => {
  t.deepEqual(splitOptionValue('guest=a,,b,debug-threads=on', 'guest'), [['guest', 'a,b'], ['debug-threads', 'on']]);
  t.deepEqual(splitOptionValue('vm1,process=qemu:vm1', 'guest'), [['guest', 'vm1'], ['process', 'qemu:vm1']]);
  t.deepEqual(splitOptionValue('file=x.img,readonly'), [['file', 'x.img'], ['readonly', 'on']]);
  t.is(parseQemuSize('2048', 'm'), 2048 * MiB);
  t.is(parseQemuSize('1.5G', 'm'), 1536 * MiB);
  t.is(parseQemuSize('1048576k', 'm'), 1024 * MiB);
  t.is(parseQemuSize('4294967296', 'b'), 4096 * MiB);
  t.throws(() => parseQemuSize('lots', 'm'), { instanceOf: SamepageError, message: /cannot parse QEMU size "lots"/ });
  const libvirtStyle = parseQemuArgs([
    '-machine', 'pc-q35-7.2,usb=off,mem-merge=off,memory-backend=pc.ram',
    '-object', '{"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}',
  ]);
  t.is(ramBytesOf(libvirtStyle), 2048 * MiB, 'size from the memory backend when -m is absent');
  const disks = cmdlineDisksOf(parseQemuArgs([
    '--drive', 'file=/v/a,,b.img,format=qcow2,readonly=on',
    '-drive', 'file=nbd:localhost:10809,format=raw',
    '-drive', 'file.filename=/v/c.img,file.driver=file',
    '-blockdev', 'driver=file,filename=/v/d.img,node-name=f1',
    '-blockdev', 'driver=qcow2,file=f1,node-name=q1',
    '-S', '/v/positional.img',
  ]));
  t.deepEqual(disks, [
    { path: '/v/a,b.img', option: '-drive', format: 'qcow2', readOnly: true },
    { path: '/v/c.img', option: '-drive' },
    { path: '/v/d.img', option: '-blockdev' },
    { path: '/v/positional.img', option: '(positional)' },
  ]);
});
