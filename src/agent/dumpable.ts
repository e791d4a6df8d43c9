/**
 * Can CRIU checkpoint this container right now? Scans the file descriptors of every process in it for
 * kinds CRIU cannot dump (or that cannot move to another host), so `ferry inspect` can say
 * "migratable: no, because …" before anyone tries. Reads /proc only.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';

/** The answer, as the agent reports it. */
export interface Migratability {
  ok: boolean;
  reasons: string[];
  checkedAt: string;
}

/** fd targets CRIU refuses or mishandles, with the reason users see. */
const UNSUPPORTED: readonly [RegExp, string][] = [
  [/^anon_inode:\[?io_uring\]?$/, 'an io_uring instance (CRIU cannot dump io_uring)'],
  [/^anon_inode:\[?perf_event\]?$/, 'a perf event (CRIU cannot dump perf events)'],
  [/^anon_inode:bpf-/, 'a BPF object (CRIU cannot dump BPF maps or programs)'],
  [/^anon_inode:\[?userfaultfd\]?$/, 'a userfaultfd (CRIU cannot dump a foreign userfaultfd)'],
  [/^anon_inode:inotify$/, 'an inotify watch (dumps fail on overlay paths, criu#2854)'],
  [/^anon_inode:\[?fanotify\]?$/, 'a fanotify group (CRIU cannot dump fanotify marks here)'],
  [/^\/dev\/(kvm|vhost-|net\/tun|fuse)/, 'a host device that cannot follow it to another host'],
];

/** Classifies one fd target; undefined when CRIU can dump it. */
export function unsupportedFd(target: string): string | undefined {
  for (const [re, why] of UNSUPPORTED) if (re.test(target)) return why;
  return undefined;
}

/** Scans the processes `pids` and says whether their fds can all be dumped. */
export async function scanMigratability(pids: readonly number[], now = new Date()): Promise<Migratability> {
  const reasons = new Map<string, string>();
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    if (fds.length === 0) continue;
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim();
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const why = unsupportedFd(target);
      if (why && !reasons.has(why)) reasons.set(why, `process ${pid} (${comm}) holds ${why} on fd ${fd}`);
    }
  }
  if (pids.length === 0) reasons.set('none', 'no process is running');
  return { ok: reasons.size === 0, reasons: [...reasons.values()], checkedAt: now.toISOString() };
}
