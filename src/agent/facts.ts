/** What this node reports about itself: capacity and the facts migration prechecks will need. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile, access } from 'node:fs/promises';
import os from 'node:os';
import type { NodeFacts } from '../model/index.ts';

const run = promisify(execFile);

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 10_000 });
    return stdout.split('\n')[0]!.trim();
  } catch {
    return 'unavailable';
  }
}

/** Reads kernel, runtime, CRIU, cgroup and CPU facts of this host. */
export async function readFacts(runcPath: string, criuPath: string): Promise<NodeFacts> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const field = (name: string): string => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo)?.[1]?.trim() ?? '';
  const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const cgroupV2 = await access('/sys/fs/cgroup/cgroup.controllers').then(() => true, () => false);
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  return {
    hostname: os.hostname(),
    kernel: os.release(),
    arch: os.arch(),
    os: /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? os.type(),
    runc: (await firstLine(runcPath, ['--version'])).replace(/^runc version\s*/, ''),
    criu: (await firstLine(criuPath, ['--version'])).replace(/^Version:\s*/, ''),
    cgroupVersion: cgroupV2 ? 2 : 1,
    overlay: /\boverlay\b/.test(filesystems),
    cpuModel: field('model name'),
    cpuFlags: field('flags').split(/\s+/).filter(Boolean),
    userfaultfd: (await readFile('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').catch(() => '0')).trim() === '1',
  };
}

/** CPU count and memory of this host. */
export function readCapacity(): { cpus: number; memoryBytes: number } {
  return { cpus: os.availableParallelism(), memoryBytes: os.totalmem() };
}
