/**
 * Row 12: snapshot and restore (issue 13). A 4 GiB guest with 64 MiB of RAM touched (the guest's
 * drivers booted, a workload under way, then 64 MiB written across its RAM): save time, image
 * size, restore time onto a new host (re-creating every host object) in adopt mode (the image's
 * buffer becomes the VM's RAM, as `cmdqv run --restore` and a migration's destination restore)
 * and in copy mode (the default), and save + adopt-restore against the 100 ms target; then 64
 * VMs of one host saved and restored (copy mode) onto a second host.
 */

import { HostKernel } from '../src/host/kernel/host-kernel.js';
import { Machine } from '../src/platform/machine.js';
import { WorkloadRun } from '../src/platform/workload.js';
import type { Row } from './harness.js';
import { scaleHost } from './workload.bench.js';

const MIB = 2 ** 20;

function args(host: string, mem: string): string[] {
  return ['-m', mem, '-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1', '-device', `vfio-pci,host=${host},iommufd=iommufd0`];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/**
 * Collect the garbage of the earlier passes (the last restored VM and its image) before a timed
 * one, so that their collection does not land in it: a `cmdqv run --save` or `--restore` runs
 * once in its process (under node --expose-gc; else nothing).
 */
function settleHeap(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** CPU milliseconds (user + system) the process has used: steadier than wall time on a shared machine. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
}

/** A VM with its workload under way and `touchMiB` of RAM written in 64 KiB pieces spread over its RAM. */
function busyVm(host: HostKernel | undefined, bdf: string, mem: string, touchMiB: number): Machine {
  const m = Machine.create(args(bdf, mem), host ? { host } : {});
  WorkloadRun.start(m, { ops: 64, batch: 16, pages: 1, injectError: false, skipInvalidation: false }).runTo(32);
  const piece = new Uint8Array(64 * 1024);
  for (let i = 0; i < piece.length; i++) piece[i] = (i * 31 + 7) & 0xff;
  const pieces = touchMiB * 16;
  const stride = Math.floor(m.ramBytes / pieces / piece.length) * piece.length;
  for (let k = 0; k < pieces; k++) {
    piece[0] = k & 0xff;
    m.writeRam(0x4000_0000 + k * stride, piece);
  }
  return m;
}

/** Row 12 rows. */
export function benchSnapshot(quick: boolean): Row[] {
  const touch = quick ? 8 : 64;
  const m = busyVm(undefined, '0009:01:00.0', '4G', touch);
  const saves: number[] = [];
  const adopts: number[] = [];
  const copies: number[] = [];
  const saveCpu: number[] = [];
  const adoptCpu: number[] = [];
  let size = 0;
  const runs = quick ? 2 : 7;
  for (let k = 0; k < runs + 1; k++) {
    settleHeap();
    let c0 = cpuMs();
    let t0 = process.hrtime.bigint();
    const image = m.save();
    const s = ms(t0);
    const sc = cpuMs() - c0;
    size = image.length;
    settleHeap();
    c0 = cpuMs();
    t0 = process.hrtime.bigint();
    const r = Machine.restore(image, { adopt: true });
    const t = ms(t0);
    const tc = cpuMs() - c0;
    r.close();
    if (k === 0) continue; // warm-up
    saves.push(s);
    adopts.push(t);
    saveCpu.push(sc);
    adoptCpu.push(tc);
  }
  // Copy mode (the default): the image stays the caller's, restored again and again.
  const kept = m.save();
  for (let k = 0; k < runs + 1; k++) {
    settleHeap();
    const t0 = process.hrtime.bigint();
    const r = Machine.restore(kept);
    const t = ms(t0);
    r.close();
    if (k > 0) copies.push(t);
  }
  m.close();
  const save = median(saves);
  const restore = median(adopts);
  const cpu = median(saveCpu) + median(adoptCpu);
  const rows: Row[] = [
    { name: `12. snapshot save, 4 GiB guest, ${touch} MiB touched`, value: save / 1e3, unit: 's', min: Math.min(...saves) / 1e3, max: Math.max(...saves) / 1e3, note: `image ${(size / MIB).toFixed(1)} MiB; CPU ${median(saveCpu).toFixed(1)} ms` },
    { name: `12. snapshot restore (new host, adopt), same VM`, value: restore / 1e3, unit: 's', min: Math.min(...adopts) / 1e3, max: Math.max(...adopts) / 1e3, note: `adopt: the image's RAM blocks become the VM's RAM (as run --restore and a migration's destination do); VM re-created through the uAPI, image checked whole; CPU ${median(adoptCpu).toFixed(1)} ms` },
    { name: `12. snapshot restore (new host, copy), same VM`, value: median(copies) / 1e3, unit: 's', min: Math.min(...copies) / 1e3, max: Math.max(...copies) / 1e3, note: 'copy (the default): guest RAM copied out of the image, which can be restored again' },
    { name: '12. save + restore (adopt)', value: (save + restore) / 1e3, unit: 's', note: `target 100 ms: ${save + restore < 100 ? 'met' : 'missed'} (${(save + restore).toFixed(1)} ms wall, ${cpu.toFixed(1)} ms CPU)` },
  ];
  // 64 VMs on one host (1 GiB each, 1 MiB touched), saved, then restored onto a second host.
  const n = quick ? 8 : 64;
  const cfg = scaleHost();
  const host = new HostKernel(cfg);
  const vms = Array.from({ length: n }, (_, i) => busyVm(host, cfg.devices[i]!.bdf, '1G', 1));
  let t0 = process.hrtime.bigint();
  const images = vms.map((v) => v.save());
  const saveAll = ms(t0);
  const bytes = images.reduce((a, b) => a + b.length, 0);
  const dest = new HostKernel(cfg);
  t0 = process.hrtime.bigint();
  const restored = images.map((img) => Machine.restore(img, { host: dest }));
  const restoreAll = ms(t0);
  for (const v of [...vms, ...restored]) v.close();
  rows.push(
    { name: `12. snapshot save, ${n} VMs of one host`, value: saveAll / 1e3, unit: 's', note: `${(saveAll / n).toFixed(2)} ms per VM; ${(bytes / MIB).toFixed(1)} MiB of images (${(bytes / n / 1024).toFixed(0)} KiB per VM)` },
    { name: `12. snapshot restore, ${n} VMs onto a second host`, value: restoreAll / 1e3, unit: 's', note: `${(restoreAll / n).toFixed(2)} ms per VM (copy mode)` },
  );
  return rows;
}
