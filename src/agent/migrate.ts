/**
 * The agent's half of a live migration (stop-copy for now). On the source: freeze (cgroup freezer),
 * dump with CRIU leaving the container frozen, pack the writable layer, serve both to the target,
 * and resume on rollback. On the target: fetch that archive over HTTP (never a shared filesystem),
 * unpack the writable layer, restore with CRIU into a fresh network namespace, publish the ports.
 * The manager drives the phases (controllers/migrations.ts); the source copy stays frozen until the
 * switch is recorded and is then killed without ever being thawed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rename, rm, rmdir, statfs, symlink, writeFile } from 'node:fs/promises';
import { createServer, isIPv4 } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { basename, join, relative } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import type { Assignment } from '../model/index.ts';
import type { FreezeResult } from '../client/index.ts';
import { failoverRefusal } from '../model/index.ts';
import { fetchFiles, listFiles, safePath, sendFiles, type SendOptions } from './transfer.ts';
import { flattenImage, makeIncremental, makeTrackedIncremental, markUnchangedLazy, startDeltaServer, writeMemoryImage, writeParentInventory, type ChangedPages, type DeltaServer, type IncrementalStats, type MemoryImageStats, type ProcessPages } from './criu-image.ts';
import { DirtyTracker, anonPageRanges, changedPageRanges, cleanPageRanges, namespacePid, openMemory, prefetch, type PageReader, type ProcessScan, type Scan } from './dirty-track.ts';
import { packBase, packDelta, tar, unpack } from './volume-sync.ts';
import type { LifecycleDeps } from './lifecycle.ts';
import type { LazyDump, RuncRuntime } from './runtime/index.ts';
import type { Attachment } from './network/index.ts';
import { criuLogErrors } from './runtime/index.ts';
import { spawnAhead } from './spawn-ahead.ts';
import { attachOptions, criuOptions, teardown, writeCriuConfig, withCriuConfig } from './lifecycle.ts';
import type { Reconciler } from './reconciler.ts';
import type { ContainerRecord } from './records.ts';
import { bundleSpec } from './spec.ts';
import { prepareVolumes } from './volumes.ts';
import { agentErrors } from './errors.ts';
import { failpoint, failpointEnabled, failpointThrow } from '../errors/index.ts';

/** Room a migration on the scratch tmpfs leaves free beyond its expected size (CRIU's other files, a margin). */
const SCRATCH_SPARE_BYTES = 64 * 1048576;
/** The file in a scratch root that names the data directory of the agent that owns it. */
export const SCRATCH_OWNER_FILE = 'owner';

/**
 * Where an agent with data directory `dataDir` keeps migration files that fit in memory: a directory
 * of its own on /dev/shm when that is a tmpfs (undefined otherwise). CRIU writes and reads its images
 * there at memory speed and nothing is written back to disk: at 1 GiB a stop-copy freeze was 7.8 s
 * with the target's image on tmpfs against 9.0–10.0 s on ext4.
 */
export function defaultScratchDir(dataDir: string): string | undefined {
  if (!isTmpfs('/dev/shm')) return undefined;
  return `/dev/shm/ferry-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`;
}

/** Whether `path` is on a tmpfs (statfs magic TMPFS_MAGIC); false when it is missing. */
export function isTmpfs(path: string): boolean {
  try {
    return statfsSync(path).type === 0x01021994;
  } catch {
    return false;
  }
}

/**
 * Whether a migration expected to put `expectBytes` here (undefined = unknown) goes to a scratch
 * tmpfs with `freeBytes` free: with a quarter and 64 MiB to spare. A full tmpfs would fail the dump
 * or the transfer (and the migration would roll back), so an unknown size goes to disk.
 */
export function fitsScratch(freeBytes: number, expectBytes: number | undefined): boolean {
  return expectBytes !== undefined && freeBytes >= expectBytes * 1.25 + SCRATCH_SPARE_BYTES;
}

/** Beside a migration's directory (always on disk): its volume copies. */
const VOLUMES_SUFFIX = '.volumes';
/** Suffix of the directory of auto's link probe (see layProbe). */
const PROBE_SUFFIX = '.probe';
/** In a migration's volumes directory on the source: which host-local volumes it moves away. */
const OUTGOING_FILE = 'outgoing.json';

/** How a migration stands, as removeStale needs it: under way, ended with the switch, ended otherwise, or not in the store. */
export type MigrationOutcome = 'active' | 'succeeded' | 'ended' | 'unknown';
/** Staging key of the writable layer among the volume copies (no volume name starts with a dot). */
const UPPER_KEY = '.upper';
/** The file, among those sent at the freeze, holding what changed in `key` (a volume or UPPER_KEY). */
const deltaFile = (key: string): string => (key === UPPER_KEY ? 'upper.delta.tar' : `volume-${key}.delta.tar`);
/** The `files` subdir a target asks for to get the volume bases. */
const VOLUMES_SUBDIR = 'volumes';
/** The `files` subdir a target asks for to get the link probe of `--strategy auto` (see layProbe). */
const PROBE_SUBDIR = 'probe';
/** The `files` subdir of pre-copy's final delta. */
const FINAL_SUBDIR = 'rounds/final/send';
/** How long a prefetch waits for the source's freeze before it gives up (the restore then fetches). */
const FINAL_WAIT_MS = 120_000;

/** A final delta as a prefetch waits for it: `settled` gives the freeze's error, or undefined once it is made. */
interface Final {
  readonly settled: Promise<string | undefined>;
  /** True once settled. */
  readonly done: boolean;
  settle(error?: Error): void;
}

function newFinal(): Final {
  let resolve!: (error: string | undefined) => void;
  const settled = new Promise<string | undefined>((r) => { resolve = r; });
  const f = {
    settled, done: false,
    settle(error?: Error): void {
      if (f.done) return;
      f.done = true;
      resolve(error?.message);
    },
  };
  return f;
}

/** How long open connections through a published port may take to finish before the freeze. */
const DRAIN_MS = 500;

/** What the migration endpoints use. */
export interface MigrateDeps extends LifecycleDeps {
  readonly dataDir: string;
  /**
   * A tmpfs directory for migration files when they fit (see defaultScratchDir); without it, or
   * when a migration's expected size does not fit, they go under dataDir/migrations.
   */
  readonly scratchDir?: string;
  readonly idPrefix: string;
  readonly token: string;
  readonly reconciler: Reconciler;
  /** Post-copy: CRIU's lazy dump, the CRIU binary (for the target's lazy-pages daemon), and the
   * address this node's page servers listen on (the one other agents reach this node by). */
  readonly postCopy?: { readonly checkpoint: RuncRuntime['checkpointLazy']; readonly criuPath: string; readonly host: string };
  /**
   * Pre-copy: follow which pages the container writes (ferry-dirty-track), so the final round reads
   * only those instead of all memory. Default: when the helper is built. Without it, or when tracking
   * fails, the final round compares every page (the delta server).
   */
  readonly dirtyTrack?: boolean;
  /**
   * CRIU runs with the clean-pages shim (criu-cache.ts cleanPagesSupported): a tracked final round's
   * dump then leaves the unchanged pages out as PE_PARENT entries instead of pinning all of memory.
   */
  readonly criuCleanPages?: boolean;
}

/** Above this share of the container's pages written since the last round, tracking saves little: the final round compares every page. */
const TRACKED_MAX_SHARE = 0.5;

/** What the tracker says changed in a frozen container since the last round (see trackedChanges). */
interface TrackedChanges {
  /** Written pages by pagemap id, and a way to read them. */
  readonly changed: Map<string, ChangedPages>;
  readonly pages: number;
  /** Pages vouched for as unchanged, by host pid and by pagemap id; absent when the dump cannot use them. */
  readonly clean?: { readonly byPid: Map<number, [number, number][]>; readonly byKey: Map<string, [number, number][]> };
  /** Takes the written pages into memory now. */
  prefetch(): void;
  close(): void;
}

/** How a post-copy target's lazy phase is going. */
interface LazyTarget {
  readonly name: string;
  readonly done: Promise<void>;
  state: 'running' | 'done' | 'failed';
  error?: string;
  readonly child: ChildProcess;
  /** Pages left to fetch are pulled faster while the restored container is paused: see dutyCycle. */
  cycling?: boolean;
}

/** Post-copy: pause/run periods of the restored container while pages are still arriving. */
const DUTY_PAUSE_MS = 100;
const DUTY_RUN_MS = 100;
/** Post-copy: how long the lazy phase may take before the migration gives the container up as lost. */
const LAZY_LIMIT_MS = 10 * 60_000;

/** Below this many bytes of pages a plain restore is as quick as a lazy one (see lazyRestoreFits). */
export const LAZY_RESTORE_MIN_BYTES = 128 * 1048576;

/**
 * Whether a restore of `pageBytes` of memory from this node's own copy runs lazily: the process runs
 * after CRIU has restored everything but the memory (0.13–0.15 s at 1 GiB), and a `criu lazy-pages`
 * daemon copies the pages in on fault and in the background, instead of the freeze lasting until all
 * of it is filled (0.6–1.3 s at 1 GiB here). It needs userfaultfd in the container's user namespace
 * (`vm.unprivileged_userfaultfd = 1`); without it the restore fills the memory first, as before.
 * `minBytes` 0 turns it off.
 */
export function lazyRestoreFits(pageBytes: number, minBytes: number = LAZY_RESTORE_MIN_BYTES, userfaultfd: boolean = userfaultfdAllowed()): boolean {
  return minBytes > 0 && pageBytes >= minBytes && userfaultfd;
}

/** vm.unprivileged_userfaultfd = 1: a restored process in a user namespace may take its faults through userfaultfd. */
function userfaultfdAllowed(): boolean {
  try {
    return readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

/**
 * Of a scan, the container's processes (`pids`) it vouches for, by pid, and those it does not: not
 * tracked (`tracked`), or reported gone.
 */
function vouchedFor(tracked: ReadonlySet<number>, pids: readonly number[], scan: Scan): { live: Map<number, ProcessScan>; untracked: number[] } {
  const live = new Map(scan.processes.filter((p) => !p.gone).map((p) => [p.pid, p]));
  return { live, untracked: pids.filter((p) => !tracked.has(p) || !live.has(p)) };
}

/** Bytes of memory pages in the CRIU image in `dir` (its pages-*.img files). */
async function pageBytes(dir: string): Promise<number> {
  return (await listFiles(dir)).filter((f) => /^pages-\d+\.img$/.test(f.path)).reduce((sum, f) => sum + f.size, 0);
}

/** Bytes of the regular files under `dir` (what a transfer of it sends). */
async function sizeOf(dir: string): Promise<number> {
  return (await listFiles(dir)).reduce((sum, f) => sum + f.size, 0);
}

/** The agent side of migrations. */
export class MigrationAgent {
  private readonly d: MigrateDeps;
  /** Source side of post-copy migrations: CRIU serving pages, by migration id. */
  private readonly lazySources = new Map<string, { readonly name: string; readonly dump: LazyDump; settled: boolean; error?: string }>();
  /** Target: fetches in progress, by migration id (a rollback ends them). */
  private readonly fetches = new Map<string, AbortController>();
  /** Target side of streamed stop-copy: the page server receiving the dump, by migration id. */
  private readonly pageServers = new Map<string, { readonly done: Promise<void>; readonly name: string; received?(): number; stop(): Promise<void> }>();
  /** Target side of post-copy migrations: the lazy-pages daemon, by migration id. */
  private readonly lazyTargets = new Map<string, LazyTarget>();

  constructor(d: MigrateDeps) {
    this.d = d;
  }

  /** Target: host-local volume directories a migration put in place (removed if it rolls back). */
  private readonly movedVolumes = new Map<string, string[]>();
  /** Target, pre-copy: the round being made flat in the background, by migration id. */
  private readonly flattening = new Map<string, { done: Promise<void>; error?: string }>();
  /** Source, pre-copy: each migration's final delta, settled once the freeze has made it (or failed). */
  private readonly finals = new Map<string, Final>();
  /** Target, pre-copy: the final delta fetched the moment the source has it (prefetchFinal), by migration id. */
  private readonly prefetches = new Map<string, { readonly round: number; readonly done: Promise<{ bytes: number; resumes: number } | undefined> }>();
  /**
   * Source, pre-copy: the delta server for a freeze after round `round`, started when that round was
   * dumped so that mapping the round's pages (≈ 90 ms at 1 GiB) is no part of the freeze.
   */
  private readonly deltaServers = new Map<string, { round: number; server: Promise<DeltaServer | undefined> }>();
  /** Source, pre-copy: the page-write tracker of each migration and the host pids it follows. */
  private readonly trackers = new Map<string, { readonly tracker: DirtyTracker; readonly pids: Set<number> }>();
  /** Source, pre-copy: trackers being ended (see stopTracking's `later`), by migration id. */
  private readonly trackerStops = new Map<string, Promise<void>>();
  /** Which root each migration's files went to (see place); after a restart, where they are found. */
  private readonly placed = new Map<string, string>();

  /** Where migration `id` keeps its files on this node. */
  dir(id: string): string {
    if (!/^[a-z0-9-]{1,64}$/.test(id)) throw agentErrors.BAD_REQUEST({ reason: `bad migration id "${id}"` });
    const scratch = this.d.scratchDir;
    const root = this.placed.get(id) ?? (scratch !== undefined && existsSync(join(scratch, id)) ? scratch : this.diskRoot());
    return join(root, id);
  }

  private diskRoot(): string {
    return join(this.d.dataDir, 'migrations');
  }

  /**
   * Chooses where migration `id` keeps its files, once, before the first of them is written: the
   * scratch tmpfs when `bytes` (what is expected to land here) fits (fitsScratch), else the data directory.
   */
  private async place(id: string, bytes: number | undefined): Promise<void> {
    if (this.placed.has(id) || existsSync(this.dir(id))) return;
    const scratch = this.d.scratchDir;
    let root = this.diskRoot();
    if (scratch !== undefined && bytes !== undefined) {
      try {
        await this.ensureScratch(scratch);
        const fs = await statfs(scratch);
        const free = fs.bavail * fs.bsize;
        if (fitsScratch(free, bytes)) root = scratch;
        else this.d.log(`migration ${id}: ${scratch} has ${Math.floor(free / 1048576)} MiB free, too little for ~${Math.ceil(bytes / 1048576)} MiB; using ${root}`);
      } catch (e) {
        this.d.log(`migration ${id}: the scratch directory ${scratch} is not usable (${(e as Error).message}); using ${root}`);
      }
    }
    this.placed.set(id, root);
    this.d.log(`migration ${id}: its files go to ${join(root, id)}${root === scratch ? ' (tmpfs)' : ''}`);
  }

  private async ensureScratch(scratch: string): Promise<void> {
    await mkdir(scratch, { recursive: true, mode: 0o755 });
    await writeFile(join(scratch, SCRATCH_OWNER_FILE), `${this.d.dataDir}\n`);
  }

  /**
   * Removes migration `id`'s files (and CRIU's work dir beside them) and forgets where they were;
   * with `keepVolumes` the volume copies (packVolumes, fetchVolumes) stay: a phase starting over.
   */
  private async removeFiles(id: string, o: { keepVolumes?: boolean } = {}): Promise<void> {
    this.endFinal(id);
    await this.endPrefetch(id);
    await this.stopDeltaServer(id);
    await this.stopTracking(id);
    // A round still being made flat would write into what is removed here.
    await this.flattening.get(id)?.done;
    this.flattening.delete(id);
    await rm(this.dir(id), { recursive: true, force: true });
    await rm(`${this.dir(id)}.work`, { recursive: true, force: true });
    await rm(this.probeDir(id), { recursive: true, force: true });
    await rm(`${this.probeDir(id)}-in`, { recursive: true, force: true });
    if (!o.keepVolumes) await rm(this.volumesDir(id), { recursive: true, force: true });
    this.placed.delete(id);
  }

  /**
   * Source, pre-copy: starts the delta server a freeze after round `round` streams its final dump
   * into (rounds/final/send, against rounds/N/full); undefined when it cannot run (see startDeltaServer).
   */
  private startDeltaServer(id: string, round: number): Promise<DeltaServer | undefined> {
    const dir = this.dir(id);
    const finalDir = join(dir, 'rounds', 'final');
    const server = rm(finalDir, { recursive: true, force: true })
      .then(() => startDeltaServer({ previous: join(dir, 'rounds', String(round), 'full'), out: join(finalDir, 'send'), parentLink: `../${round}` }))
      .catch((e: Error) => { this.d.log(`migration ${id}: the delta server did not start (${e.message}); a final round is compared from files`); return undefined; });
    this.deltaServers.set(id, { round, server });
    return server;
  }

  /** Source, pre-copy: ends migration `id`'s delta server, if one waits. */
  private async stopDeltaServer(id: string): Promise<void> {
    const d = this.deltaServers.get(id);
    this.deltaServers.delete(id);
    await (await d?.server)?.stop();
  }

  /**
   * Source, pre-copy, right before round `round`'s dump: the tracker's scan starts a new window, so
   * what is written from here on (while CRIU reads this round, and after) is what the final round
   * must send. Round 0 starts the tracker; processes new since the last round are followed from now
   * (their first scan vouches for nothing: the dump after it holds their pages). Any failure ends
   * tracking for this migration, and the final round compares every page instead.
   */
  private async trackWrites(id: string, rec: ContainerRecord, round: number): Promise<Scan | undefined> {
    if (round === 0) {
      await this.stopTracking(id);
      if (!this.writesTrackable() || !this.d.postCopy) return undefined;
      this.trackers.set(id, { tracker: DirtyTracker.start(), pids: new Set() });
    }
    const t = this.trackers.get(id);
    if (!t) return undefined;
    try {
      for (const pid of await this.d.runtime.pids(rec.runtimeId)) {
        if (t.pids.has(pid)) continue;
        await t.tracker.track(pid);
        t.pids.add(pid);
      }
      const scan = await t.tracker.scan();
      for (const p of scan.processes) if (p.gone) t.pids.delete(p.pid);
      return scan;
    } catch (e) {
      this.d.log(`migration ${id}: the writes of ${rec.name} cannot be tracked (${(e as Error).message}); its rounds are dumped and its final round will compare every page`);
      await this.stopTracking(id);
      return undefined;
    }
  }

  /**
   * Source, pre-copy round `round` with the writes tracked: no dump, no pause. The pages the scan
   * that began this round found written since the last one, and the anonymous pages of the mappings
   * it could not vouch for (every mapping in round 0, and new ones), are read from the running
   * processes into an image of memory only (writeMemoryImage): rounds/0/full, or rounds/N/send over
   * rounds/N-1/full, which the source then makes flat into rounds/N/full as the target does with
   * what it fetches. A page written after the scan is the next round's (or the final round's).
   */
  private async trackedRound(id: string, rec: ContainerRecord, round: number, scan: Scan): Promise<{ sentBytes: number; dumpMs: number; pagesChanged?: number; tracked: true }> {
    if (round > 0) failpointThrow('migrate:tracked-round');
    const t = this.trackers.get(id)!;
    const pids = await this.d.runtime.pids(rec.runtimeId);
    const { live, untracked } = vouchedFor(t.pids, pids, scan);
    if (untracked.length > 0) throw new Error(`processes ${untracked.join(', ')} are not tracked`);
    const base = join(this.dir(id), 'rounds');
    const dir = join(base, String(round));
    const t0 = performance.now();
    const readers: { close(): void }[] = [];
    let stats: MemoryImageStats;
    try {
      const processes = new Map<string, ProcessPages>();
      for (const pid of pids) {
        const p = live.get(pid)!;
        const reader = openMemory(pid);
        readers.push(reader);
        // Written pages too go through CRIU's rule (a page only read maps the zero page, which CRIU leaves out).
        processes.set(String(namespacePid(pid)), { ranges: anonPageRanges(pid, changedPageRanges(p)), read: reader.read });
      }
      stats = round === 0
        ? await writeMemoryImage({ out: join(dir, 'full'), processes })
        : await writeMemoryImage({ out: join(dir, 'send'), previous: join(base, String(round - 1), 'full'), parentLink: `../${round - 1}`, processes });
    } finally {
      for (const r of readers) r.close();
    }
    const readMs = performance.now() - t0;
    failpoint('migrate:during-copy');
    if (round > 0) {
      // send/parent (../N-1, as the target lays rounds out) resolves here through rounds/N/N-1.
      await symlink(`../${round - 1}/full`, join(dir, String(round - 1)));
      const f = await flattenImage(join(dir, 'send'), join(dir, 'full'), { consumeParent: true });
      await rm(join(dir, String(round - 1)));
      await rm(join(base, String(round - 1), 'full'), { recursive: true, force: true });
      this.d.log(`migration ${id}: round ${round} of ${rec.name}: ${stats.pagesChanged} pages written or new read while it ran in ${Math.round(readMs)} ms${stats.pagesUnreadable ? ` (${stats.pagesUnreadable} gone meanwhile)` : ''}; made flat (${f.pagesWritten} of ${f.pages} pages written${f.copiedWhy ? `, copied because ${f.copiedWhy}` : ''}) in ${Math.round(performance.now() - t0 - readMs)} ms`);
    } else {
      this.d.log(`migration ${id}: round 0 of ${rec.name}: ${stats.pagesChanged} pages read while it ran in ${Math.round(readMs)} ms`);
    }
    // No delta server: the final round reads the written pages (should that fail, it compares files).
    return { sentBytes: stats.bytesWritten, dumpMs: readMs, ...(round > 0 ? { pagesChanged: stats.pagesChanged } : {}), tracked: true };
  }

  /**
   * Source, pre-copy: ends migration `id`'s write tracking (the container's memory is left
   * unprotected). With `later`, the helper is let go without waiting (its memory walk is ~40 ms at
   * 1 GiB, and the frozen copy does not need it): removeFiles waits for it.
   */
  private async stopTracking(id: string, o: { later?: boolean } = {}): Promise<void> {
    const t = this.trackers.get(id);
    this.trackers.delete(id);
    const stopping = t?.tracker.stop();
    if (!stopping) return this.trackerStops.get(id);
    const done = stopping.catch((e: Error) => this.d.log(`migration ${id}: the write tracker did not end cleanly: ${e.message}`)).finally(() => {
      if (this.trackerStops.get(id) === done) this.trackerStops.delete(id);
    });
    this.trackerStops.set(id, done);
    if (!o.later) await done;
  }

  /**
   * Source, pre-copy final round, frozen: what the tracker says changed since round `round` began,
   * by pagemap id, when it vouches for every process and for enough of memory to be worth it; else
   * undefined (the caller compares every page). Readers stay open until `close`.
   */
  private async trackedChanges(id: string, rec: ContainerRecord): Promise<TrackedChanges | undefined> {
    const t = this.trackers.get(id);
    if (!t) return undefined;
    const readers: { close(): void }[] = [];
    const close = (): void => { for (const r of readers) r.close(); };
    try {
      failpointThrow('migrate:tracker-scan');
      const pids = await this.d.runtime.pids(rec.runtimeId);
      const memory = this.memoryOf(rec); // (runc's answer comes during the scan)
      const scan = await t.tracker.scan({ frozen: true });
      const { live, untracked } = vouchedFor(t.pids, pids, scan);
      if (untracked.length > 0) {
        this.d.log(`migration ${id}: processes ${untracked.join(', ')} of ${rec.name} are not tracked; the final round compares every page`);
        return undefined;
      }
      // Untracked mappings are not counted: of those only the pages the dump lists are read.
      const mem = await memory;
      const pages = scan.writtenPages;
      if (mem !== undefined && pages * 4096 > mem * TRACKED_MAX_SHARE) {
        this.d.log(`migration ${id}: ${pages} pages of ${rec.name} written since the last round; the final round compares every page`);
        return undefined;
      }
      const changed = new Map<string, ChangedPages & { read: PageReader }>();
      const written = new Map<string, [number, number][]>();
      const clean = this.d.criuCleanPages ? { byPid: new Map<number, [number, number][]>(), byKey: new Map<string, [number, number][]>() } : undefined;
      for (const pid of pids) {
        const reader = openMemory(pid);
        readers.push(reader);
        const p = live.get(pid)!;
        const key = String(namespacePid(pid));
        const ranges = changedPageRanges(p);
        changed.set(key, { ranges, read: reader.read });
        written.set(key, changedPageRanges({ ...p, untracked: [] }));
        // The pages the final dump may leave out (a process without them is dumped whole).
        const unchanged = clean ? cleanPageRanges(pid, ranges) : undefined;
        if (clean && unchanged) {
          clean.byPid.set(pid, unchanged);
          clean.byKey.set(key, unchanged);
        }
      }
      /** Takes the written pages into memory now (see prefetch). */
      const prefetchAll = (): void => {
        for (const [key, c] of changed) c.read = prefetch(c.read, written.get(key)!);
      };
      return { changed, pages, prefetch: prefetchAll, close, ...(clean && clean.byPid.size > 0 ? { clean } : {}) };
    } catch (e) {
      close();
      this.d.log(`migration ${id}: the tracker's scan failed (${(e as Error).message}); the final round compares every page`);
      return undefined;
    }
  }

  /** Where auto's link probe of migration `id` is laid (source) or fetched to (target, `-in`): on disk, beside the volume copies. */
  private probeDir(id: string): string {
    this.dir(id); // checks the id
    return join(this.diskRoot(), `${id}${PROBE_SUFFIX}`);
  }

  /** Where migration `id` keeps its volume copies: always on disk (volumes may be larger than memory). */
  private volumesDir(id: string): string {
    this.dir(id); // checks the id
    return join(this.diskRoot(), `${id}${VOLUMES_SUFFIX}`);
  }

  /** A host-local volume's data directory on this node. */
  private localVolume(name: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw agentErrors.BAD_REQUEST({ reason: `bad volume name "${name}"` });
    return join(this.d.volumes.local, name, 'data');
  }

  /** Whether this agent may follow a container's writes (ferry-dirty-track built, not turned off). */
  private writesTrackable(): boolean {
    return this.d.dirtyTrack !== false && DirtyTracker.available();
  }

  /**
   * Source, Precheck of `--strategy auto`: how fast container `name` writes its memory, from the
   * write tracker (ferry-dirty-track): every anonymous page protected, the pages written in the next
   * `windowMs` counted, the protection removed again. `why` instead when it cannot be measured here.
   */
  async measureWrites(id: string, name: string, windowMs: number): Promise<{ bytesPerSec?: number; pages?: number; ms?: number; why?: string }> {
    this.dir(id); // checks the id
    const rec = this.record(name);
    if (!this.writesTrackable()) return { why: 'the write tracker is not available on this node' };
    const tracker = DirtyTracker.start();
    try {
      for (const pid of await this.d.runtime.pids(rec.runtimeId)) await tracker.track(pid);
      await tracker.scan(); // protects every mapping
      const t0 = performance.now();
      await sleep(windowMs);
      const scan = await tracker.scan();
      const ms = performance.now() - t0;
      return { bytesPerSec: Math.round((scan.writtenPages * 4096 * 1000) / ms), pages: scan.writtenPages, ms: Math.round(ms) };
    } catch (e) {
      return { why: (e as Error).message };
    } finally {
      await tracker.stop().catch((e: Error) => this.d.log(`migration ${id}: the write tracker did not end cleanly: ${e.message}`));
    }
  }

  /**
   * Source, Precheck of `--strategy auto`: `bytes` random bytes for the target to fetch the way the
   * migration's files travel (measureLink); removed once sent, or with the migration's files.
   */
  async layProbe(id: string, bytes: number): Promise<{ bytes: number }> {
    const dir = this.probeDir(id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Random, so that nothing on the way could make it cheaper than memory pages.
    await writeFile(join(dir, 'probe'), randomBytes(bytes));
    return { bytes };
  }

  /** Target, Precheck of `--strategy auto`: fetches the source's probe (layProbe); the link's speed as the migration's files would see it. */
  async measureLink(id: string, sourceUrl: string): Promise<{ bytes: number; ms: number; bytesPerSec: number }> {
    const dir = `${this.probeDir(id)}-in`;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const t0 = performance.now();
      const got = await this.fetch(id, sourceUrl, dir, { bytesPerSec: 0, subdir: PROBE_SUBDIR });
      const ms = Math.max(1, performance.now() - t0);
      return { bytes: got.bytes, ms: Math.round(ms), bytesPerSec: Math.round((got.bytes * 1000) / ms) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Source, while the container runs: packs its writable layer and each host-local volume whole
   * (the base pass, see volume-sync.ts) for the target to fetch (files subdir `volumes`); the freeze
   * then packs only what changed since. Returns the bytes packed.
   */
  async packVolumes(id: string, name: string, volumes: readonly string[]): Promise<{ bytes: number }> {
    const rec = this.record(name);
    const vd = this.volumesDir(id);
    await rm(vd, { recursive: true, force: true });
    await mkdir(join(vd, 'base'), { recursive: true, mode: 0o700 });
    let bytes = 0;
    const sources: [string, string][] = [[UPPER_KEY, join(this.d.records.containerDir(rec.runtimeId), 'upper')], ...volumes.map((v): [string, string] => [v, this.localVolume(v)])];
    for (const [key, dir] of sources) bytes += await packBase(dir, this.snapshot(id, key), join(vd, 'base', `${key}.tar`));
    // The host-local volumes it moves away (removed here once it has succeeded), on disk: a source
    // agent that restarts before the Cleanup still knows them.
    await writeFile(join(vd, OUTGOING_FILE), JSON.stringify({ container: name, volumes }));
    this.d.log(`migration ${id}: packed the writable layer and ${volumes.length} local volume(s) of ${name} (${bytes} bytes)`);
    return { bytes };
  }

  /** Target, before the freeze: fetches the source's writable layer and volume bases and unpacks them into staging. */
  async fetchVolumes(id: string, sourceUrl: string, volumes: readonly string[], bytesPerSec = 0): Promise<{ bytes: number }> {
    const vd = this.volumesDir(id);
    await rm(vd, { recursive: true, force: true });
    await mkdir(join(vd, 'base'), { recursive: true, mode: 0o700 });
    const got = await this.fetch(id, sourceUrl, join(vd, 'base'), { bytesPerSec, subdir: VOLUMES_SUBDIR, failpoint: 'migrate:during-volume-fetch' });
    for (const v of volumes) this.localVolume(v); // checks the names
    for (const key of [UPPER_KEY, ...volumes]) {
      await unpack(join(vd, 'base', `${key}.tar`), join(vd, 'data', key));
      await rm(join(vd, 'base', `${key}.tar`), { force: true });
    }
    return { bytes: got.bytes };
  }

  /**
   * Target, in the freeze: applies each volume's delta (from `from`) to its staging copy and moves
   * it into place. A volume of that name that already holds data here is not overwritten: the
   * restore fails and the migration rolls back.
   */
  private async placeVolumes(id: string, volumes: readonly string[], from: string): Promise<void> {
    for (const v of volumes) {
      const dst = this.localVolume(v);
      const held = await readdir(dst).then((n) => n.length > 0, () => false);
      if (held) throw agentErrors.BAD_REQUEST({ reason: `local volume ${v} already holds data on this node; remove it (or rename the container's volume) and migrate again` });
      await mkdir(join(this.d.volumes.local, v), { recursive: true, mode: 0o755 });
      await this.unstage(id, v, from, dst);
      this.movedVolumes.set(id, [...(this.movedVolumes.get(id) ?? []), join(this.d.volumes.local, v)]);
    }
  }

  /** Where the base-pass snapshot of `key` (a volume or UPPER_KEY) of migration `id` is kept. */
  private snapshot(id: string, key: string): string {
    return join(this.volumesDir(id), `${key}.snar`);
  }

  /** Target: brings the staged copy of `key` up to date with its delta (in `from`) and moves it to `dst`, replacing it. */
  private async unstage(id: string, key: string, from: string, dst: string): Promise<void> {
    const staged = join(this.volumesDir(id), 'data', key);
    await unpack(join(from, deltaFile(key)), staged);
    await rm(dst, { recursive: true, force: true });
    await rename(staged, dst);
  }

  /** The container's memory now (what a dump of it writes), or undefined. */
  private async memoryOf(rec: ContainerRecord): Promise<number | undefined> {
    return this.d.runtime.stats(rec.runtimeId).then((s) => Number(s.memoryUsageBytes) || undefined, () => undefined);
  }

  private record(name: string): ContainerRecord {
    const rec = this.d.reconciler.recordByName(name);
    if (!rec) throw agentErrors.CONTAINER_NOT_FOUND({ id: name });
    return rec;
  }

  /**
   * Source: freeze, dump (staying frozen), pack the writable layer. Returns the archive size. With
   * `postCopy` the dump leaves memory out and CRIU serves the pages from a page server whose address
   * is returned; the frozen container is then CRIU's until the target has every page.
   */
  freeze(id: string, name: string, o: FreezeOptions = {}): Promise<FreezeResult> {
    const asked = performance.now();
    // The reconcile loop stays away meanwhile: a re-scan must not publish the ports being closed.
    return this.d.reconciler.exclusive(name, () => this.freezeNow(id, name, o, asked));
  }

  private async freezeNow(id: string, name: string, o: FreezeOptions, asked: number): Promise<FreezeResult> {
    const { postCopy, streamTo, preCopyRound } = o;
    const rec = this.record(name);
    // runc's answer comes while the files are made ready (a runc run costs ~10 ms).
    const stateNow = this.d.runtime.state(rec.runtimeId);
    stateNow.catch(() => undefined);
    const upper = join(this.d.records.containerDir(rec.runtimeId), 'upper');
    if (preCopyRound === undefined) {
      await this.removeFiles(id, { keepVolumes: true });
      // What lands here: the writable layer's archive, and the memory pages unless they go elsewhere.
      const mem = postCopy || streamTo ? 0 : await this.memoryOf(rec);
      await this.place(id, mem === undefined ? undefined : mem + await sizeOf(upper).catch(() => 0));
    }
    const dir = this.dir(id);
    // After pre-copy rounds the final dump goes beside them (rounds/final) and only its delta travels:
    // CRIU streams it into a local delta server, which keeps only the pages that differ from the last
    // round as they arrive (no full image, no comparison afterwards); copyRound started it. Without
    // the helper: a full dump into rounds/final/full, then the delta from files.
    const finalDir = join(dir, 'rounds', 'final');
    // A target may already wait for this freeze's delta (prefetchFinal); a settled one is an earlier try's.
    const final = preCopyRound === undefined ? undefined : this.finalOf(id, { fresh: true });
    const ready = this.deltaServers.get(id);
    // While the writes are tracked none waits, and none is started (the tracked final round needs none).
    const delta = preCopyRound === undefined ? undefined : ready?.round === preCopyRound ? await ready.server
      : this.trackers.has(id) ? undefined : (await this.stopDeltaServer(id), await this.startDeltaServer(id, preCopyRound));
    if (preCopyRound !== undefined && !delta) await rm(finalDir, { recursive: true, force: true });
    await mkdir(preCopyRound === undefined ? join(dir, 'image') : finalDir, { recursive: true, mode: 0o755 });
    let packing: Promise<void> | undefined;
    let isolated = false;
    let lockSkipped = false;
    const containerDir = this.d.records.containerDir(rec.runtimeId);
    // runc's answer is not waited for before the pause (≈ 7 ms of the freeze): freezing a container
    // that is already frozen changes nothing, and one that is not running is refused right after the
    // pause, before anything is dumped (the manager's rollback then resumes and reconnects it).
    const mustRun = async (): Promise<void> => {
      const st = await stateNow;
      if (st?.status !== 'running' && st?.status !== 'paused') throw agentErrors.BAD_REQUEST({ reason: `${name} is ${st?.status ?? 'gone'}, not running` });
    };
    try {
      rec.outgoing = id;
      await this.d.records.save(rec);
      // Refuse new connections, let requests already in the app finish (bounded), then freeze: a request
      // the app has counted is never cut before its answer leaves.
      // From the request on: what comes before the pause (the record, the files) is in the freeze too.
      const times = stopwatch(asked);
      times.lap('ready');
      await this.d.network.unpublish(rec.runtimeId, DRAIN_MS);
      times.lap('drain');
      const t0 = performance.now();
      // On the overlay the target takes over this address: from now on nothing may reach this copy,
      // whose kernel would otherwise go on acknowledging data for connections the target holds. What
      // it sends still leaves until the pause: an answer written from a socket the app then closes is
      // not in the checkpoint, so it must go out now or never. Frozen, it is cut off altogether (its
      // kernel's retransmissions and, later, the resets of its end must not reach the clients).
      if (this.d.network.cluster) {
        await this.d.network.refuseInbound(rec.runtimeId);
        times.lap('inbound refused');
      }
      try {
        await this.d.runtime.pause(rec.runtimeId).catch(async (e: unknown) => {
          await mustRun();
          if ((await stateNow)?.status !== 'paused') throw e; // (paused already: nothing to do)
        });
        times.lap('pause');
      } finally {
        if (this.d.network.cluster) isolated = await this.d.network.isolate(rec.runtimeId);
      }
      if (this.d.network.cluster) times.lap(isolated ? 'isolated' : 'isolating failed (the lock stays)');
      await mustRun();
      times.lap("runc's state");
      // CRIU's own network lock keeps a dump's TCP state still for a restore that takes the connections
      // on. Here it would guard nothing, and its unlock alone is ≈ 10 ms of the freeze: on the overlay
      // the copy is cut off at its veth (when that failed, the lock stays); off it the target closes
      // the connections (its address differs). The file is put back once the dump is made.
      lockSkipped = isolated || !this.d.network.cluster;
      if (lockSkipped) await writeCriuConfig(containerDir, criuOptions({ networkLock: 'skip' }));
      // The writable layer and the host-local volumes are frozen with it: they are packed (aside, as a
      // dump may clear the directory it writes) while CRIU dumps, on the other CPU.
      const packDir = join(dir, 'packing');
      packing = this.packFrozen(id, upper, packDir, o.volumes ?? []);
      packing.catch(() => undefined); // awaited after the dump, or in the catch below
      let pageServer: string | undefined;
      // After pre-copy rounds with the writes tracked: only the written pages are read (see trackedFinal).
      const tracked = preCopyRound !== undefined ? await this.trackedChanges(id, rec) : undefined;
      if (tracked) times.lap("the write tracker's list");
      let trackedStats: (IncrementalStats & { unchangedLeftOut: boolean }) | undefined;
      if (tracked) {
        try {
          trackedStats = await this.trackedFinal(id, rec, finalDir, preCopyRound!, tracked, times);
        } finally {
          tracked.close();
        }
      } else if (postCopy) {
        const pc = this.d.postCopy;
        if (!pc) throw agentErrors.BAD_REQUEST({ reason: 'this agent has no CRIU configured for post-copy' });
        pageServer = `${pc.host}:${await freePort(pc.host)}`;
        // The work dir (logs, the page server's socket) stays out of the image sent to the target.
        await mkdir(`${dir}.work`, { recursive: true, mode: 0o755 });
        const dump = await pc.checkpoint(rec.runtimeId, { imagePath: join(dir, 'image'), workPath: `${dir}.work`, pageServer, tcpEstablished: true });
        const entry: { name: string; dump: LazyDump; settled: boolean; error?: string } = { name, dump, settled: false };
        this.lazySources.set(id, entry);
        // Until CRIU has served every page, the frozen copy must not be torn down (its memory is the source).
        this.d.reconciler.hold(name, dump.done.then(
          () => { entry.settled = true; this.d.log(`migration ${id}: every page of ${name} was served`); },
          (e: Error) => { entry.settled = true; entry.error = e.message; this.d.log(`migration ${id}: serving the pages of ${name} failed: ${e.message}`); },
        ));
      } else {
        // With `streamTo` the pages go straight to the target's page server while CRIU dumps them; after
        // pre-copy rounds, to the delta server.
        const imagePath = preCopyRound === undefined ? join(dir, 'image') : join(finalDir, delta ? 'send' : 'full');
        const pagesTo = streamTo ?? delta?.address;
        await this.d.runtime.checkpoint(rec.runtimeId, { imagePath, leaveRunning: true, tcpEstablished: true, ...(pagesTo ? { pageServer: pagesTo } : {}) });
      }
      if (lockSkipped) await writeCriuConfig(containerDir, criuOptions());
      if (!trackedStats) times.lap('dump');
      let sendDir = dir;
      let finalDelta: FreezeResult['finalDelta'];
      if (preCopyRound !== undefined) {
        sendDir = join(finalDir, 'send');
        this.deltaServers.delete(id); // spent by this dump
        void this.stopTracking(id, { later: true });
        let stats: IncrementalStats | undefined = trackedStats;
        if (!stats) {
          stats = delta ? await delta.finish() : await makeIncremental({ previous: join(dir, 'rounds', String(preCopyRound), 'full'), current: join(finalDir, 'full'), out: sendDir, parentLink: `../${preCopyRound}` });
          times.lap(`delta (${stats.pagesChanged} of ${stats.pagesTotal} pages changed${delta ? ', compared while streamed' : ''})`);
        }
        finalDelta = { pagesSent: stats.pagesChanged, pagesTotal: stats.pagesTotal, tracked: trackedStats !== undefined, ...(trackedStats ? { unchangedLeftOut: trackedStats.unchangedLeftOut } : {}) };
      }
      const dumpMs = performance.now() - t0;
      failpoint('migrate:after-dump');
      await packing;
      await mkdir(sendDir, { recursive: true, mode: 0o755 });
      for (const f of await readdir(packDir)) await rename(join(packDir, f), join(sendDir, f));
      await rmdir(packDir);
      times.lap('pack (made while CRIU dumped)');
      final?.settle();
      const how = postCopy ? ' (post-copy)' : streamTo ? ` (pages streamed to ${streamTo})` : preCopyRound !== undefined ? ` (pre-copy, after round ${preCopyRound})` : '';
      this.d.log(`migration ${id}: ${name} frozen and dumped${how}: ${times.summary()}`);
      return { bytes: await sizeOf(sendDir), dumpMs, ...(pageServer ? { pageServer } : {}), ...(finalDelta ? { finalDelta } : {}) };
    } catch (e) {
      final?.settle(e as Error);
      if (lockSkipped) await writeCriuConfig(containerDir, criuOptions());
      await packing?.catch(() => undefined);
      await this.stopDeltaServer(id); // a server still waiting for a dump that will not come
      await this.stopTracking(id);
      throw e;
    }
  }

  /**
   * Source, frozen: packs into `out` the writable layer (what changed since its base was packed by
   * packVolumes, else all of it) and host-local volumes `volumes` (what changed since theirs).
   */
  private async packFrozen(id: string, upper: string, out: string, volumes: readonly string[]): Promise<void> {
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true, mode: 0o755 });
    if (existsSync(this.snapshot(id, UPPER_KEY))) await packDelta(upper, this.snapshot(id, UPPER_KEY), join(out, deltaFile(UPPER_KEY)));
    else await tar(['-c', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', join(out, 'upper.tar'), '-C', upper, '.']);
    for (const v of volumes) await packDelta(this.localVolume(v), this.snapshot(id, v), join(out, deltaFile(v)));
  }

  /**
   * Source, pre-copy final round with the writes tracked, frozen: the image the target restores
   * holds the pages written since round `round` began and PE_PARENT entries for all the others,
   * which the target holds from that round; the freeze reads the written pages, not all of memory.
   * With the clean-pages shim CRIU's own incremental dump is that image; without it (or when CRIU
   * refuses it) CRIU makes a lazy dump — everything but the anonymous pages, whose places it only
   * notes — and the image is made from it and the written pages, read from the frozen processes
   * (CRIU's page server of that dump is never asked for a page and is ended at once). The container
   * stays frozen, as after any final dump.
   */
  private async trackedFinal(id: string, rec: ContainerRecord, finalDir: string, round: number, tracked: TrackedChanges, times: { lap(name: string): void }): Promise<IncrementalStats & { unchangedLeftOut: boolean }> {
    await this.stopDeltaServer(id);
    if (tracked.clean) {
      try {
        return { ...await this.trackedFinalDump(id, rec, finalDir, round, tracked, times, tracked.clean), unchangedLeftOut: true };
      } catch (e) {
        // The container is still frozen and whole (--leave-running): the plain way is still open.
        this.d.log(`migration ${id}: the final dump without the unchanged pages failed (${(e as Error).message}); dumping again with every page pinned`);
        times.lap('dump without the unchanged pages failed');
      }
    }
    return { ...await this.trackedFinalDump(id, rec, finalDir, round, tracked, times), unchangedLeftOut: false };
  }

  /**
   * One attempt of trackedFinal. With `clean` (the pages the tracker vouches for as unchanged since
   * round `round`, by host pid and by pagemap id) CRIU's dump is incremental over that round's image
   * (native/criu/clean-pages.c tells it which pages are clean): those pages become PE_PARENT entries
   * it neither pins nor copies, and it writes the others — the written ones — itself: its image is
   * the one sent (markUnchangedLazy only flags the unchanged pages lazy). Without it CRIU makes a lazy
   * dump in which every anonymous page is a lazy page it pins (the walk of all of memory: 263–278 ms
   * at 1 GiB), and the image is made from it and the written pages read meanwhile.
   */
  private async trackedFinalDump(
    id: string, rec: ContainerRecord, finalDir: string, round: number, tracked: TrackedChanges, times: { lap(name: string): void },
    clean?: NonNullable<TrackedChanges['clean']>,
  ): Promise<IncrementalStats> {
    const pc = this.d.postCopy!;
    await rm(finalDir, { recursive: true, force: true });
    const work = join(finalDir, 'work');
    await mkdir(work, { recursive: true, mode: 0o755 });
    const previous = join(this.dir(id), 'rounds', String(round), 'full');
    if (clean) {
      const file = join(work, 'clean-pages');
      const lines: string[] = [];
      for (const [pid, ranges] of clean.byPid) {
        lines.push(`p ${pid}`);
        for (const [s, e] of ranges) lines.push(`c ${(s * 4096).toString(16)} ${(e * 4096).toString(16)}`);
      }
      await writeFile(file, `${lines.join('\n')}\n`);
      // CRIU takes from a parent only the pages of processes begun before it was taken. (The
      // failpoint leaves the file out: CRIU's dump then fails for real, and the plain one follows.)
      if (failpointEnabled('migrate:clean-pages-dump')) await rm(join(previous, 'inventory.img'), { force: true });
      else await writeParentInventory(previous);
      const send = join(finalDir, 'send');
      await mkdir(send, { recursive: true, mode: 0o755 });
      await this.d.runtime.checkpoint(rec.runtimeId, { imagePath: send, workPath: work, leaveRunning: true, tcpEstablished: true, parentPath: relative(send, previous), cleanPages: file });
      times.lap('dump of the written pages only (the rest unchanged)');
      // The parent as the target lays the rounds out (CRIU linked the source's).
      await rm(join(send, 'parent'), { force: true });
      await symlink(`../${round}`, join(send, 'parent'));
      const stats = await markUnchangedLazy({ dump: send, previous, clean: clean.byKey });
      times.lap(`image (${stats.pagesChanged} of ${stats.pagesTotal} pages sent, tracked)`);
      return stats;
    }
    const lazy = join(finalDir, 'lazy');
    await mkdir(lazy, { recursive: true, mode: 0o755 });
    const dumping = pc.checkpoint(rec.runtimeId, { imagePath: lazy, workPath: work, pageServer: `127.0.0.1:${await freePort('127.0.0.1')}`, tcpEstablished: true });
    // While CRIU works (its own processes, the other CPU), the written pages are read here: the
    // processes are frozen, so they are what the dump sees.
    try {
      tracked.prefetch();
    } catch (e) {
      await dumping.then((d) => d.stop(), () => undefined);
      throw e;
    }
    const dump = await dumping;
    try {
      times.lap('dump without pages, written pages read meanwhile');
      const stats = await makeTrackedIncremental({ dump: lazy, previous, out: join(finalDir, 'send'), parentLink: `../${round}`, changed: tracked.changed });
      times.lap(`image (${stats.pagesChanged} of ${stats.pagesTotal} pages sent, tracked)`);
      await dump.stop();
      times.lap('CRIU ended');
      return stats;
    } catch (e) {
      await dump.stop();
      throw e;
    }
  }

  /** Migration `id`'s final delta (see `finals`); `fresh` replaces one an earlier freeze settled. */
  private finalOf(id: string, o: { fresh?: boolean } = {}): Final {
    const f = this.finals.get(id);
    if (f && !(o.fresh && f.done)) return f;
    const made = newFinal();
    this.finals.set(id, made);
    return made;
  }

  /** Forgets migration `id`'s final delta; a prefetch still waiting for it is told the migration ended. */
  private endFinal(id: string): void {
    this.finals.get(id)?.settle(new Error('the migration ended'));
    this.finals.delete(id);
  }

  /** Source: the files of migration `id` (CRIU image + writable layer) for the target, from `resume` on. */
  files(id: string, o: SendOptions, subdir?: string, waitFinal = false): Readable {
    if (waitFinal) {
      // A target's prefetch: the final delta is sent once the freeze has made it (see prefetchFinal).
      const out = new PassThrough();
      const final = this.finalOf(id);
      const timeout = setTimeout(() => out.destroy(new Error('no freeze came within 2 minutes')), FINAL_WAIT_MS);
      timeout.unref();
      void final.settled.then((error) => {
        clearTimeout(timeout);
        if (error !== undefined) out.destroy(new Error(`the freeze failed: ${error}`));
        else if (!out.destroyed) sendFiles(join(this.dir(id), safePath(subdir ?? FINAL_SUBDIR)), o).on('error', (e) => out.destroy(e)).pipe(out);
      });
      out.once('close', () => clearTimeout(timeout));
      return out;
    }
    if (subdir === VOLUMES_SUBDIR) return sendFiles(join(this.volumesDir(id), 'base'), o);
    if (subdir === PROBE_SUBDIR) {
      // Sent once, then gone (a --check migration has no Cleanup to remove it).
      const dir = this.probeDir(id);
      return sendFiles(dir, o).once('close', () => void rm(dir, { recursive: true, force: true }));
    }
    return sendFiles(subdir ? join(this.dir(id), safePath(subdir)) : this.dir(id), o);
  }

  /** Source, rollback: thaw the frozen container and publish its ports again. */
  async resume(id: string, name: string, ports: Assignment['spec']['ports']): Promise<void> {
    const rec = this.record(name);
    await this.stopDeltaServer(id);
    // A post-copy dump that never reached the target ends first; the container stays frozen meanwhile.
    const lazy = this.lazySources.get(id);
    if (lazy) {
      await lazy.dump.stop();
      this.lazySources.delete(id);
    }
    const st = await this.d.runtime.state(rec.runtimeId);
    if (st?.status === 'paused') await this.d.runtime.resume(rec.runtimeId);
    if (this.d.network.cluster) await reconnect(this.d, rec);
    if (ports.length > 0 && rec.ip) await this.d.network.publish(rec.runtimeId, rec.ip, ports);
    rec.outgoing = undefined;
    await this.d.records.save(rec);
    await rm(join(this.volumesDir(id), OUTGOING_FILE), { force: true }); // they stay: the container runs on here
    await this.removeFiles(id);
  }

  /**
   * Source, pre-copy round `round`, while the container runs: a `--leave-running` dump into
   * rounds/N/full and, from round 1 on, the delta against round N-1 into rounds/N/send (pages equal to
   * the previous round's as PE_PARENT entries: only changed pages travel). This kernel has no
   * soft-dirty tracking, so every round dumps everything and compares content.
   */
  async copyRound(id: string, name: string, round: number): Promise<{ sentBytes: number; dumpMs: number; pagesChanged?: number; tracked?: boolean }> {
    const rec = this.record(name);
    if (round === 0) {
      await this.removeFiles(id, { keepVolumes: true });
      // Two full dumps at a time (this round's and the last, to compare), and the deltas.
      const mem = await this.memoryOf(rec);
      await this.place(id, mem === undefined ? undefined : 2.5 * mem);
    }
    const base = join(this.dir(id), 'rounds');
    await this.stopDeltaServer(id); // it compares against the round before this one
    await mkdir(join(base, String(round)), { recursive: true, mode: 0o755 });
    const full = join(base, String(round), 'full');
    const scan = await this.trackWrites(id, rec, round);
    if (scan) {
      try {
        return await this.trackedRound(id, rec, round, scan);
      } catch (e) {
        this.d.log(`migration ${id}: round ${round} of ${name} could not be read while it ran (${(e as Error).message}); it is dumped, and the final round will compare every page`);
        await this.stopTracking(id);
        await rm(join(base, String(round)), { recursive: true, force: true });
        await mkdir(join(base, String(round)), { recursive: true, mode: 0o755 });
      }
    }
    const t0 = performance.now();
    await this.d.runtime.checkpoint(rec.runtimeId, { imagePath: full, leaveRunning: true, tcpEstablished: true });
    const dumpMs = performance.now() - t0;
    failpoint('migrate:during-copy');
    if (round === 0) {
      void this.startDeltaServer(id, round);
      return { sentBytes: await sizeOf(full), dumpMs };
    }
    const send = join(base, String(round), 'send');
    const stats = await makeIncremental({ previous: join(base, String(round - 1), 'full'), current: full, out: send, parentLink: `../${round - 1}` });
    // The target holds every earlier round; only the last full dump is compared against next.
    await rm(join(base, String(round - 1), 'full'), { recursive: true, force: true }).catch(() => undefined);
    void this.startDeltaServer(id, round);
    this.d.log(`migration ${id}: round ${round} of ${name}: ${stats.pagesChanged} of ${stats.pagesTotal} pages changed (dump ${Math.round(dumpMs)} ms)`);
    return { sentBytes: stats.bytesWritten, dumpMs, pagesChanged: stats.pagesChanged };
  }

  /** Target, pre-copy: fetches round `round` into rounds/N (linked to its parent round). */
  async fetchRound(id: string, sourceUrl: string, round: number, bytesPerSec = 0, expectBytes?: number): Promise<{ bytes: number; ms: number }> {
    if (round === 0) {
      await this.removeFiles(id, { keepVolumes: true });
      // Round 0 is a full image; later rounds add their deltas, up to about as much again.
      await this.place(id, expectBytes === undefined ? undefined : 2 * expectBytes);
    }
    await this.flattened(id);
    const dir = join(this.dir(id), 'rounds', String(round));
    await freshRoundDir(dir, round > 0 ? round - 1 : undefined);
    const t0 = performance.now();
    const got = await this.fetch(id, sourceUrl, dir, { bytesPerSec, subdir: `rounds/${round}/${round === 0 ? 'full' : 'send'}` });
    const ms = performance.now() - t0;
    if (round > 0) {
      // Made flat before the round counts as done: the freeze that may follow must not wait for it
      // (the restore needs it), nor share the CPUs with it.
      this.flattenRound(id, round);
      await this.flattened(id);
    }
    return { bytes: got.bytes, ms };
  }

  /**
   * Target, pre-copy, while the source still runs: makes round `round` a flat image (its changed
   * pages written into round N-1's pages file, see flattenImage) and drops round N-1, so the chain
   * the final restore reads is one flat image deep whatever the number of rounds. fetchRound waits
   * for it before it answers; the restore and the next round check it is done (flattened).
   */
  private flattenRound(id: string, round: number): void {
    const base = join(this.dir(id), 'rounds');
    const [dir, flat] = [join(base, String(round)), join(base, `${round}.flat`)];
    const state: { done: Promise<void>; error?: string } = { done: Promise.resolve() };
    state.done = (async () => {
      const t0 = performance.now();
      await rm(flat, { recursive: true, force: true });
      const s = await flattenImage(dir, flat, { consumeParent: true });
      await rm(dir, { recursive: true, force: true });
      await rename(flat, dir);
      await rm(join(base, String(round - 1)), { recursive: true, force: true });
      this.d.log(`migration ${id}: round ${round} made flat (${s.pagesWritten} of ${s.pages} pages written${s.patchedParent ? ' into the previous round\'s' : ', copied'}) in ${Math.round(performance.now() - t0)} ms${s.copiedWhy ? `; copied because ${s.copiedWhy}` : ''}`);
    })().catch((e: unknown) => { state.error = (e as Error).message; });
    this.flattening.set(id, state);
  }

  /** Waits for migration `id`'s background flattening; a failed one fails the caller (its chain may be spent). */
  private async flattened(id: string): Promise<void> {
    const f = this.flattening.get(id);
    if (!f) return;
    await f.done;
    this.flattening.delete(id);
    if (f.error !== undefined) throw agentErrors.BAD_REQUEST({ reason: `pre-copy: flattening the last round failed: ${f.error}` });
  }

  /** Fetches files of migration `id` from the source agent into `dir`; ended by a rollback (abort). */
  private async fetch(id: string, sourceUrl: string, dir: string, o: { bytesPerSec: number; subdir?: string; failpoint?: string; waitFinal?: boolean; retries?: number }): Promise<{ bytes: number; resumes: number }> {
    const ac = new AbortController();
    this.fetches.set(id, ac);
    try {
      return await fetchFiles(new URL(`v1/migrate/${id}/files`, sourceUrl.endsWith('/') ? sourceUrl : `${sourceUrl}/`).href, this.d.token, dir, {
        bytesPerSec: o.bytesPerSec, signal: ac.signal, ...(o.subdir ? { subdir: o.subdir } : {}), progress: () => failpoint(o.failpoint ?? 'migrate:during-fetch'),
        ...(o.waitFinal ? { waitFinal: true } : {}), ...(o.retries !== undefined ? { retries: o.retries } : {}),
      });
    } finally {
      if (this.fetches.get(id) === ac) this.fetches.delete(id);
    }
  }

  /**
   * Target, before the freeze: a page server that receives the dump's memory pages straight into this
   * migration's image directory while the source dumps (no image file on the source, no second copy):
   * Ferry's ferry-delta-server, which writes them into space allocated now, or CRIU's own. It serves
   * one dump and exits. `expectBytes` (about the container's memory) decides whether the image fits
   * on the scratch tmpfs, and how much is allocated ahead.
   */
  async prepare(id: string, expectBytes?: number): Promise<{ pageServer: string }> {
    const pc = this.d.postCopy;
    if (!pc) throw agentErrors.BAD_REQUEST({ reason: 'this agent has no CRIU configured' });
    await this.pageServers.get(id)?.stop();
    await this.removeFiles(id, { keepVolumes: true });
    await this.place(id, expectBytes);
    const dir = this.dir(id);
    await mkdir(join(dir, 'image'), { recursive: true, mode: 0o755 });
    // Ferry's own receiver when it is built and the address is IPv4: it writes the pages into memory
    // allocated before the freeze (writing into fresh tmpfs pages took twice as long, in the freeze).
    const own = isIPv4(pc.host) ? await startDeltaServer({ out: join(dir, 'image'), listen: pc.host, ...(expectBytes ? { poolBytes: expectBytes } : {}) }) : undefined;
    if (own) {
      const done = own.finish().then(() => undefined);
      done.catch(() => undefined); // restore() awaits it
      this.pageServers.set(id, { done, name: 'ferry-delta-server', received: () => own.received(), stop: () => own.stop() });
      return { pageServer: own.address };
    }
    const port = await freePort(pc.host);
    // setpriv --pdeathsig: it dies with this agent. --status-fd 3: one byte once it listens.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', pc.criuPath, 'page-server', '--images-dir', join(dir, 'image'),
      '--address', pc.host, '--port', String(port), '--status-fd', '3', '-o', join(dir, 'page-server.log'), '-v2'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    const done = exitOf(child, 'criu page-server', join(dir, 'page-server.log'));
    const ready = await new Promise<boolean>((resolve) => {
      (child.stdio[3] as NodeJS.ReadableStream).once('data', () => resolve(true));
      void done.then(() => resolve(false), () => resolve(false));
    });
    if (!ready) {
      await done.catch((e: Error) => { throw agentErrors.BAD_REQUEST({ reason: e.message }); });
      throw agentErrors.BAD_REQUEST({ reason: 'criu page-server ended before it listened' });
    }
    this.pageServers.set(id, {
      done,
      name: 'criu page-server',
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await done.catch(() => undefined);
      },
    });
    return { pageServer: `${pc.host}:${port}` };
  }

  /** Target: ends migration `id`'s prefetch, if any (a fetch still waiting for the source is aborted). */
  private async endPrefetch(id: string): Promise<void> {
    const pre = this.prefetches.get(id);
    if (!pre) return;
    this.prefetches.delete(id);
    this.fetches.get(id)?.abort();
    await pre.done;
  }

  /**
   * Target, pre-copy, asked just before the source freezes: fetches the final delta of round
   * `round`'s successor as soon as the source has made it — the source holds the request until then —
   * instead of when the manager relays that the freeze is done (≈ 15 ms later). restore() takes it
   * over; when it failed, restore() fetches as before. Answers at once.
   */
  async prefetchFinal(id: string, sourceUrl: string, round: number, bytesPerSec = 0): Promise<void> {
    await this.endPrefetch(id);
    const imageDir = join(this.dir(id), 'rounds', 'final');
    await freshRoundDir(imageDir, round);
    const done = this.fetch(id, sourceUrl, imageDir, { bytesPerSec, subdir: FINAL_SUBDIR, waitFinal: true, retries: 0 })
      .catch((e: Error) => { this.d.log(`migration ${id}: fetching the final delta ahead failed (${e.message}); the restore fetches it`); return undefined; });
    this.prefetches.set(id, { round, done });
  }

  /** Target: fetch the archive from the source agent and restore the container from it. */
  async restore(id: string, sourceUrl: string, a: Assignment, o: RestoreFrom = {}): Promise<{ runtimeId: string; pid: number; bytes: number; restoreMs: number }> {
    // Pages streamed during the dump: the page server has them all once it exits.
    const ps = this.pageServers.get(id);
    if (!ps && o.preCopyRound === undefined) {
      // Post-copy: the image holds no pages (they fault in later); the writable layer comes with it.
      await this.removeFiles(id, { keepVolumes: true });
      await this.place(id, o.expectBytes);
    }
    const dir = this.dir(id);
    const times = stopwatch();
    // Where the image is: the migration's image/ (stop-copy, post-copy) or, after pre-copy rounds,
    // rounds/final whose unchanged pages live in the earlier rounds (its `parent` chain).
    let imageDir = o.preCopyRound !== undefined ? join(dir, 'rounds', 'final') : join(dir, 'image');
    /** The image's memory, its parent's pages included (an overlaid pre-copy image holds few itself). */
    let memoryBytes: number | undefined;
    /** The image has pages in its parent: no lazy restore. */
    let eager = false;
    if (ps) {
      await ps.done;
      this.pageServers.delete(id);
      times.lap(`pages (${ps.name})`);
    } else if (o.preCopyRound === undefined) {
      await mkdir(dir, { recursive: true, mode: 0o755 });
    }
    const pre = this.prefetches.get(id);
    let got: { bytes: number; resumes: number } | undefined;
    if (pre && pre.round === o.preCopyRound) {
      this.prefetches.delete(id);
      got = await pre.done;
    } else {
      await this.endPrefetch(id); // one asked for another round's: not this one
    }
    const ahead = got !== undefined;
    if (!got) {
      if (o.preCopyRound !== undefined) await freshRoundDir(imageDir, o.preCopyRound);
      got = await this.fetch(id, sourceUrl, o.preCopyRound !== undefined ? imageDir : dir, {
        bytesPerSec: o.bytesPerSec ?? 0, ...(o.preCopyRound !== undefined ? { subdir: FINAL_SUBDIR } : {}),
      });
    }
    times.lap(`fetch${ahead ? ' (begun as the source finished)' : ''}${got.resumes > 0 ? ` (${got.resumes} resumes)` : ''}`);
    if (o.preCopyRound !== undefined) {
      // CRIU reads a parent chain run by run: a flat image (the last round's pages file patched with
      // the final delta's pages) restores as fast as a plain dump, lazily when big. When the memory
      // layout changed since that round (a process's mappings, or pages CRIU's own first dump of it
      // made private), making it flat would copy every page; the delta's pages go into the last
      // round's file where it has them instead (an image one deep with long parent runs), restored
      // at once: CRIU's lazy-pages daemon serves no pages from a parent.
      await this.flattened(id);
      const flat = join(dir, 'rounds', 'final.flat');
      await rm(flat, { recursive: true, force: true });
      const s = await flattenImage(imageDir, flat, { consumeParent: true, overlay: 'when-layout-changed' });
      imageDir = flat;
      if (s.overlaid) eager = true;
      else memoryBytes = s.pages * 4096;
      times.lap(`${s.overlaid ? 'overlay' : 'flatten'} (${s.pagesWritten} of ${s.pages} pages written${s.copiedWhy ? `; the layout changed, ${s.copiedWhy}` : ''})`);
    }
    // What arrived is all here: its size is read while the restore goes on, not after it (a walk of
    // the rounds, ≈ 3 ms). Files the restore adds (CRIU's logs) are not transfer; a walk that trips
    // over one going away is done again at the end.
    const arrived = sizeOf(dir).catch(() => undefined);
    const t0 = performance.now();
    const rec: ContainerRecord = {
      name: a.name, uid: a.uid, runtimeId: `${this.d.idPrefix}${a.name.toLowerCase().slice(0, 40)}-${randomBytes(4).toString('hex')}`,
      epoch: a.epoch, appliedGeneration: a.generation, restartCount: 0, stoppedByUser: false, createdAt: new Date().toISOString(),
      incoming: id, launched: true,
    };
    await this.d.records.save(rec);
    this.d.reconciler.addIncoming(rec);
    let upperPlaced: Promise<void> | undefined;
    try {
      // Post-copy: the lazy-pages daemon takes the restored process's page faults (through the socket
      // in the work dir it shares with the restore) and fetches the pages from the source's server.
      // A big image already here (stop-copy, pre-copy) is restored the same way from this node's own
      // copy: the processes get their memory as they touch it and in the background, instead of the
      // freeze waiting while all of it is filled (see lazyRestoreFits). It starts while the rest is
      // prepared.
      const local = o.pageServer === undefined && this.d.postCopy !== undefined && !eager && lazyRestoreFits(memoryBytes ?? await pageBytes(imageDir));
      const lazyStarting = o.pageServer !== undefined || local ? this.startLazyPages(id, a.name, o.pageServer, imageDir) : undefined;
      lazyStarting?.catch(() => undefined); // awaited below; abort() ends a daemon that did start
      const cdir = this.d.records.containerDir(rec.runtimeId);
      const preparing = this.d.images.prepareRootfs(rec.runtimeId, a.spec.image, cdir, { deferMount: true });
      // The writable layer goes into the overlay's upper dir before it is mounted (whiteouts and xattrs
      // kept), as soon as that dir exists: meanwhile the rest is prepared (tar is a process of its own).
      const sent = o.preCopyRound !== undefined ? imageDir : dir;
      upperPlaced = preparing.then(async () => {
        if (existsSync(join(sent, deltaFile(UPPER_KEY))) && existsSync(join(this.volumesDir(id), 'data', UPPER_KEY))) {
          // Staged before the freeze; brought up to date, it becomes the overlay's (not yet mounted) upper dir.
          await this.unstage(id, UPPER_KEY, sent, join(cdir, 'upper'));
        } else {
          await tar(['-x', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-p', '-f', join(sent, 'upper.tar'), '-C', join(cdir, 'upper')]);
        }
      });
      upperPlaced.catch(() => undefined); // awaited before the restore
      const [prepared, att] = await Promise.all([
        preparing,
        // On the overlay the container keeps its address; its veth stays down until the switch.
        this.d.network.attach(rec.runtimeId, this.d.network.cluster && a.network ? attachOptions(a, 'down') : {}),
      ]);
      times.lap('rootfs and address');
      // The image must be readable by the container's mapped root; established TCP connections are
      // restored as they were on the cluster overlay (the address moves with the container) and
      // closed otherwise (a node-local subnet: the address changes); the processes are restored
      // stopped (SIGSTOP) and continue only once the switch is recorded, so a copy whose migration
      // rolls back never runs a single instruction.
      const keepsAddress = this.d.network.cluster !== undefined && a.network !== undefined;
      // CRIU's network lock guards nothing here: with its address the copy's veth stays down until the
      // continue; without it no connection is restored.
      const criuConf = await writeCriuConfig(cdir, `${keepsAddress ? 'tcp-established\n' : 'tcp-close\n'}leave-stopped\n${criuOptions({ networkLock: 'skip' })}`);
      // A flat image is read alone; an overlaid one (after pre-copy) with its parent round.
      await chownTree(eager ? join(dir, 'rounds') : imageDir, this.d.idMap.hostId);
      rec.rootfsMode = prepared.mode;
      rec.ip = att.ip;
      restoredAttachments.set(rec.runtimeId, att);
      // Host-local volumes: their staged copies, brought up to date, go into place.
      if (o.volumes && o.volumes.length > 0) await this.placeVolumes(id, o.volumes, sent);
      // Named volumes mount where they live on this node (a shared one is the same directory the source used).
      const volumes = await prepareVolumes(this.d.volumes, a, this.d.node, this.d.idMap, { fence: false });
      const bundle = {
        ...(await bundleSpec({
          runtimeId: rec.runtimeId, name: a.name, spec: { ...a.spec, volumes }, image: prepared.image.config, imageRef: a.spec.image,
          rootfs: prepared.path, rootfsMount: prepared.mount, idMap: this.d.idMap, hooks: att.hooks,
        })),
        fenced: failoverRefusal(a.spec) === undefined,
      };
      times.lap('image owner, volumes, bundle');
      await upperPlaced;
      times.lap('writable layer (placed meanwhile)');
      const lazy = await lazyStarting;
      times.lap('lazy-pages daemon');
      const st = await this.d.runtime.restore(withCriuConfig(bundle, criuConf), lazy
        ? { imagePath: imageDir, workPath: imageDir, extraArgs: ['--lazy-pages'] }
        : { imagePath: imageDir, workPath: join(dir, 'work') });
      times.lap('restore');
      failpointThrow('migrate:restore-fails');
      this.d.log(`migration ${id}: ${a.name} restored${o.pageServer ? ' (post-copy)' : local ? ' (memory copied in lazily from this node)' : ''}: ${times.summary()}`);
      // From now on the file serves the next dump of this container (a chained migration).
      await writeCriuConfig(cdir, criuOptions());
      failpoint('migrate:after-restore');
      if (a.spec.ports.length > 0) await this.d.network.publish(rec.runtimeId, att.ip, a.spec.ports);
      rec.startedAt = new Date().toISOString();
      rec.appliedResources = { ...a.spec.resources };
      await this.d.records.save(rec);
      return { runtimeId: rec.runtimeId, pid: st.pid, bytes: (await arrived) ?? await sizeOf(dir), restoreMs: performance.now() - t0 };
    } catch (e) {
      await upperPlaced?.catch(() => undefined); // no tar still writing into what abort removes
      await this.abort(id, a.name).catch(() => undefined);
      throw e;
    }
  }

  /** Target, after the switch is recorded: let the restored (stopped) processes run. */
  async continue(id: string, name: string): Promise<void> {
    const rec = this.record(name);
    if (rec.incoming !== id && rec.incoming !== undefined) throw agentErrors.BAD_REQUEST({ reason: `${name} is not the incoming copy of ${id}` });
    // `incoming` is cleared once the processes run: the reconciler got there first (the switch's assignment).
    const laps = rec.incoming === undefined && !continuing.has(rec.runtimeId) ? 'already running' : await continueProcesses(this.d, rec);
    this.d.log(`migration ${id}: ${name} continues: ${laps}`);
    const lazy = this.lazyTargets.get(id);
    if (lazy && lazy.state === 'running' && !lazy.cycling) void this.dutyCycle(lazy, rec.runtimeId);
  }

  /**
   * Target: starts `criu lazy-pages` for the image in `imageDir`. Post-copy (`pageServer` given): it
   * fetches the pages from the source's page server. Local (no `pageServer`): the pages are already
   * in `imageDir` and it copies them in from there.
   */
  private async startLazyPages(id: string, name: string, pageServer: string | undefined, imageDir: string): Promise<LazyTarget> {
    const pc = this.d.postCopy;
    if (!pc) throw agentErrors.BAD_REQUEST({ reason: 'this agent has no CRIU configured for post-copy' });
    const args = ['lazy-pages', '-D', imageDir, '-W', imageDir, '-o', 'lazy-pages.log', '-v2'];
    let child: ChildProcess;
    if (pageServer !== undefined) {
      const [host, port] = [pageServer.slice(0, pageServer.lastIndexOf(':')), pageServer.slice(pageServer.lastIndexOf(':') + 1)];
      // setpriv --pdeathsig: the daemon dies with this agent. Left running by a dead agent it would pull
      // every page for a copy whose migration is about to roll back.
      child = spawnAhead('setpriv', ['--pdeathsig', 'KILL', '--', pc.criuPath, ...args, '--page-server', '--address', host, '--port', port], { noInput: true });
      child.stdout?.resume();
    } else {
      // From this node's own copy the daemon needs nothing from this agent: it outlives an agent that
      // dies (own process group, no pipe to break), and the copy's memory still completes. It holds
      // the page files open from the restore on, so removing the directory later takes nothing away.
      child = spawnAhead(pc.criuPath, args, { noStdio: true, detached: true });
      child.unref();
    }
    const t: LazyTarget = { name, child, state: 'running', done: exitOf(child, 'criu lazy-pages', join(imageDir, 'lazy-pages.log')) };
    t.done.then(() => { t.state = 'done'; }, (e: Error) => { t.state = 'failed'; t.error = e.message; this.d.log(`migration ${id}: ${e.message}`); });
    this.lazyTargets.set(id, t);
    // The daemon must listen on its socket before the restore connects to it.
    for (let i = 0; i < 200 && !existsSync(join(imageDir, 'lazy-pages.socket')) && t.state === 'running'; i++) await sleep(5);
    if (t.state !== 'running' || !existsSync(join(imageDir, 'lazy-pages.socket'))) {
      child.kill('SIGKILL');
      throw agentErrors.BAD_REQUEST({ reason: `criu lazy-pages did not start: ${t.error ?? 'no socket after 1 s'}` });
    }
    return t;
  }

  /**
   * Post-copy: while pages are still arriving, run the restored container in short slices. CRIU's
   * lazy-pages daemon serves one fault at a time and starts its background transfer only when no
   * fault is pending, so a busy writer can starve it for minutes; pausing lets the transfer win
   * (measured here: 1 GiB in 2.8 s instead of 78 s, the app at ~60 % speed meanwhile).
   */
  private async dutyCycle(t: LazyTarget, runtimeId: string): Promise<void> {
    t.cycling = true;
    const t0 = Date.now();
    const settled = t.done.then(() => undefined, () => undefined);
    try {
      await Promise.race([settled, sleep(DUTY_RUN_MS)]);
      while (t.state === 'running') {
        if (Date.now() - t0 > LAZY_LIMIT_MS) {
          t.child.kill('SIGKILL');
          break;
        }
        await this.d.runtime.pause(runtimeId).catch(() => undefined);
        await Promise.race([settled, sleep(DUTY_PAUSE_MS)]);
        await this.d.runtime.resume(runtimeId).catch(() => undefined);
        await Promise.race([settled, sleep(DUTY_RUN_MS)]);
      }
    } finally {
      t.cycling = false;
    }
  }

  /** Target: bytes of migration `id` on this node so far (streamed pages and fetched files). */
  async received(id: string): Promise<{ bytes: number }> {
    // ferry-delta-server's pool is allocated whole before the freeze: while it is there, what it
    // holds is what the server says it received, not the pool's size (at the end it becomes a pages file).
    const files = await listFiles(this.dir(id)).catch(() => []);
    const isPool = (f: { path: string }): boolean => basename(f.path) === '.pool';
    const onDisk = files.filter((f) => !isPool(f)).reduce((sum, f) => sum + f.size, 0);
    return { bytes: onDisk + (files.some(isPool) ? (this.pageServers.get(id)?.received?.() ?? 0) : 0) };
  }

  /**
   * Either side: where migration `id` stands after the switch. Post-copy is finished only once every
   * page has reached the target (and the source's CRIU has exited); a failed transfer means the
   * container's memory is lost.
   */
  progress(id: string): { done: boolean; error?: string } {
    const target = this.lazyTargets.get(id);
    if (target) return target.state === 'running' ? { done: false } : { done: true, ...(target.error ? { error: `the container's memory could not be completed: ${target.error}` } : {}) };
    const source = this.lazySources.get(id);
    if (source) return source.settled ? { done: true, ...(source.error ? { error: source.error } : {}) } : { done: false };
    return { done: true };
  }

  /** Target, rollback: remove the incoming copy of migration `id`, if any. */
  async abort(id: string, name: string): Promise<void> {
    this.fetches.get(id)?.abort();
    this.prefetches.delete(id);
    await this.pageServers.get(id)?.stop();
    this.pageServers.delete(id);
    const lazy = this.lazyTargets.get(id);
    if (lazy) {
      lazy.child.kill('SIGKILL');
      await lazy.done.catch(() => undefined);
      this.lazyTargets.delete(id);
    }
    const rec = this.d.reconciler.recordByName(name);
    if (rec && rec.incoming === id) {
      restoredAttachments.delete(rec.runtimeId);
      await teardown(this.d, rec, 0);
      this.d.reconciler.forget(name);
    }
    // Volumes this migration put in place here go with the copy that would have used them.
    for (const v of this.movedVolumes.get(id) ?? []) await rm(v, { recursive: true, force: true });
    this.movedVolumes.delete(id);
    await this.removeFiles(id);
  }

  /**
   * After an agent restart: removes the files of migrations that have ended (`outcome` asks the
   * manager), e.g. a half-fetched image left by a crash during the transfer. A source that was down
   * at the Cleanup of a migration that succeeded also removes its stale copies of the host-local
   * volumes that moved away (the container uses the target's now).
   */
  async removeStale(outcome: (id: string) => Promise<MigrationOutcome>): Promise<void> {
    for (const root of [this.diskRoot(), ...(this.d.scratchDir !== undefined ? [this.d.scratchDir] : [])]) {
      for (const name of await readdir(root).catch(() => [] as string[])) {
        if (name === SCRATCH_OWNER_FILE && root === this.d.scratchDir) continue;
        const id = name.replace(/\.(work|probe|probe-in)$/, '').replace(VOLUMES_SUFFIX, '');
        if (this.lazySources.has(id) || this.lazyTargets.has(id) || this.pageServers.has(id) || this.fetches.has(id) || this.flattening.has(id)) continue;
        const o = await outcome(id);
        if (o === 'active') continue;
        if (name.endsWith(VOLUMES_SUFFIX)) {
          const outgoing = await this.outgoingOnDisk(id);
          if (o === 'succeeded') await this.removeMovedAway(id, outgoing);
          else if (outgoing.length > 0 && o === 'unknown') this.d.log(`migration ${id} is not in the store any more; the local volumes it was moving (${outgoing.join(', ')}) stay here`);
        }
        this.d.log(`removing the files of ended migration ${id}`);
        await rm(join(root, name), { recursive: true, force: true });
      }
    }
  }

  /** Source: the host-local volumes migration `id` moves away, as packVolumes wrote them down (none when it did not, or after a rollback). */
  private async outgoingOnDisk(id: string): Promise<readonly string[]> {
    const raw = await readFile(join(this.volumesDir(id), OUTGOING_FILE), 'utf8').catch(() => undefined);
    if (raw === undefined) return [];
    const v = (JSON.parse(raw) as { volumes?: unknown }).volumes;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  }

  /** Source, after a migration succeeded: its copies of the volumes that moved away are stale. */
  private async removeMovedAway(id: string, volumes: readonly string[]): Promise<void> {
    for (const v of volumes) {
      this.localVolume(v); // checks the name
      await rm(join(this.d.volumes.local, v), { recursive: true, force: true });
      this.d.log(`migration ${id}: local volume ${v} moved away; its copy here is removed`);
    }
  }

  /** At agent stop: the scratch directory goes when no migration's files are left in it. */
  async close(): Promise<void> {
    const scratch = this.d.scratchDir;
    if (scratch === undefined) return;
    const left = await readdir(scratch).catch(() => undefined);
    if (left === undefined) return;
    if (left.every((n) => n === SCRATCH_OWNER_FILE)) {
      await rm(join(scratch, SCRATCH_OWNER_FILE), { force: true });
      await rmdir(scratch).catch(() => undefined);
    } else {
      this.d.log(`migration files stay in ${scratch} (${left.filter((n) => n !== SCRATCH_OWNER_FILE).join(', ')}); the next start removes those of ended migrations`);
    }
  }

  /** Either side: remove migration `id`'s files (once any post-copy transfer has ended). */
  async cleanup(id: string): Promise<{ done: boolean; error?: string }> {
    const p = this.progress(id);
    if (!p.done) return p;
    this.lazyTargets.delete(id);
    this.lazySources.delete(id);
    this.movedVolumes.delete(id);
    // Source, after the switch: the host-local volumes live on the target now; this copy is stale.
    const outgoing = await this.outgoingOnDisk(id);
    if (outgoing.length > 0) failpoint('migrate:source-cleanup');
    await this.removeMovedAway(id, outgoing);
    await this.removeFiles(id);
    return p;
  }
}

/** Continues under way, by runtime id: the reconciler (the switch's assignment arrived) and the manager's call may meet. */
const continuing = new Map<string, Promise<string>>();
/** The network attachment a restore made here, by runtime id, until its processes continue. */
const restoredAttachments = new Map<string, Attachment>();

/**
 * Sends SIGCONT to every process of a container restored with leave-stopped; clears `incoming`. On
 * the cluster overlay the container is first connected; its address is announced (a gratuitous ARP
 * from inside its namespace, so the overlay learns where it went) as it runs, not before: the
 * announcement takes two process spawns and only steers traffic, which the running app's own first
 * frame also does. Two calls at once share one run; returns the laps for the log.
 */
export function continueProcesses(d: Pick<MigrateDeps, 'runtime' | 'records' | 'network' | 'log'>, rec: ContainerRecord): Promise<string> {
  const running = continuing.get(rec.runtimeId);
  if (running) return running.then(() => 'joined a continue already under way');
  const run = (async () => {
    const times = stopwatch();
    let announce: ((pid: number) => Promise<void>) | undefined;
    if (d.network.cluster && rec.ip) {
      // The restore's attachment when this agent made it (asking for it again costs a lease lookup).
      const att = restoredAttachments.get(rec.runtimeId) ?? await d.network.attach(rec.runtimeId, { ip: rec.ip });
      await d.network.bringUp(att);
      announce = (pid) => d.network.announce(att, pid);
      times.lap('connect');
    }
    const pids = await d.runtime.pids(rec.runtimeId);
    for (const pid of pids) {
      try { process.kill(pid, 'SIGCONT'); } catch { /* exited meanwhile */ }
    }
    times.lap('SIGCONT');
    if (announce && pids[0] !== undefined) void announce(pids[0]).catch((e: Error) => d.log(`network: announcing ${rec.name} failed: ${e.message}`));
    return times.summary();
  })();
  // The answer does not wait for the record: the processes run. Until it is saved, a second call
  // joins this one (and waits, like it, only for SIGCONT); an agent that dies before it is saved
  // finds `incoming` still set and sends SIGCONT again (harmless to running processes) when the
  // switch's assignment reaches it.
  continuing.set(rec.runtimeId, run);
  void run.then(async () => {
    restoredAttachments.delete(rec.runtimeId);
    if (rec.incoming === undefined) return;
    rec.incoming = undefined;
    await d.records.save(rec).catch((e: Error) => d.log(`${rec.name} runs, but its record could not be saved: ${e.message}`));
  }, () => undefined).finally(() => continuing.delete(rec.runtimeId));
  return run;
}

/** How the source freezes (see MigrationAgent.freeze). */
export interface FreezeOptions {
  /** Dump without memory and serve the pages (post-copy). */
  readonly postCopy?: boolean;
  /** Stop-copy: host:port of the target's page server that takes the pages as they are dumped. */
  readonly streamTo?: string;
  /** Pre-copy: the last round the target holds; only the delta against it is sent. */
  readonly preCopyRound?: number;
  /** Host-local volumes whose base was packed (packVolumes): what changed since goes with the image. */
  readonly volumes?: readonly string[];
}

/** Where a restore takes its image from (see MigrationAgent.restore). */
export interface RestoreFrom {
  /** Post-copy: host:port of the source's page server. */
  readonly pageServer?: string;
  readonly bytesPerSec?: number;
  /** Pre-copy: the last round the target holds; the final delta's parent. */
  readonly preCopyRound?: number;
  /** What will arrive (the source's freeze reports it): whether it fits on the scratch tmpfs. */
  readonly expectBytes?: number;
  /** Host-local volumes fetched before the freeze (fetchVolumes): their deltas came with the image. */
  readonly volumes?: readonly string[];
}

/** Settles when `child` exits: resolves on 0, rejects with the errors of its log otherwise. */
function exitOf(child: ChildProcess, what: string, logFile: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  const p = new Promise<void>((resolve, reject) => {
    child.on('close', async (code, signal) => {
      if (code === 0) return resolve();
      const errors = await criuLogErrors(logFile);
      reject(new Error(`${what} ended with ${code ?? signal}${stderr.trim() ? `: ${stderr.trim()}` : ''}${errors ? ` — ${errors}` : ''}`));
    });
  });
  void p.catch(() => undefined);
  return p;
}

/** Lap times for the agent's log: where a freeze or restore spends its time. */
function stopwatch(start = performance.now()): { lap(name: string): void; summary(): string } {
  let last = start;
  const laps: string[] = [];
  return {
    lap(name) {
      const now = performance.now();
      laps.push(`${name} ${Math.round(now - last)} ms`);
      last = now;
    },
    summary: () => laps.join(', '),
  };
}

/** A TCP port free on `host` right now (for CRIU's page server, which takes a number, not a socket). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Empties (or makes) the target's directory `dir` for one pre-copy round, linked to round `parent` when given. */
async function freshRoundDir(dir: string, parent: number | undefined): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (parent !== undefined) await symlink(`../${parent}`, join(dir, 'parent'));
}

async function chownTree(dir: string, uid: number): Promise<void> {
  await chown(dir, uid, uid);
  await chmod(dir, 0o755);
  // All at once: one after another, a few hundred entries took 10–30 ms here (inside the freeze).
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  await Promise.all(entries.map((e) => chown(join(e.parentPath, e.name), uid, uid)));
}

/** On the cluster overlay: connects a container's host veth again and announces its address here. */
export async function reconnect(d: Pick<MigrateDeps, 'runtime' | 'network'>, rec: ContainerRecord): Promise<void> {
  if (!rec.ip) return;
  const att = await d.network.attach(rec.runtimeId, { ip: rec.ip });
  const st = await d.runtime.state(rec.runtimeId);
  await d.network.announce(att, st?.pid ?? 0);
}
