/**
 * The migration executor: drives each Migration object through the state machine
 * (src/migration), calling the source and target agents for each phase and persisting every step,
 * so a restarted manager recovers (rolls back before the switch, finishes after it).
 * Strategies: stop-copy (pages streamed to the target during the dump), pre-copy (rounds while the
 * container runs, then the last delta), post-copy (lazy pages after the switch).
 */
import type { Store } from '../store/index.ts';
import { mutate, put, remove } from '../store/index.ts';
import { AgentClient } from '../client/index.ts';
import { failpoint } from '../errors/index.ts';
import type { Assignment, Container, ContainerStatus, Migration, Node, NodeImages } from '../model/index.ts';
import { keys, findImage, formatBytes } from '../model/index.ts';
import { AUTO_PROBE_BYTES, AUTO_STOP_COPY_MAX_BYTES, AUTO_WRITE_WINDOW_MS, autoStrategy, precopyDone, step, recover, TERMINAL, movesMemory, precheck, blocking, localVolumeNames, volumeCheck, type RoundReport, type MachineState, type MigrationEvent, type MigrationPhase } from '../migration/index.ts';
import { assignmentOf, nodeSnapshots } from './containers.ts';
import { startLoop, type Loop } from './loop.ts';
import { holdAtEntryPoints, releaseHold } from './holds.ts';

/**
 * Pre-copy stops copying once the last delta would cross in this long (or after PRECOPY_MAX_ROUNDS):
 * the final delta (what is written during the last round) is about that size or smaller, and its
 * pages are what the freeze spends on top of two runc+CRIU runs (≈ 250 ms at 1 GiB here): dumped,
 * sent, patched into the target's flat image — ≈ 50 µs a page here (1,828 pages froze ≈ 50 ms longer
 * than 800). With 300 ms a 77 MB round on loopback ended the copying and left 3,400 pages to the
 * freeze; one more round (≈ 0.3–0.5 s of total time) leaves a few hundred.
 */
const PRECOPY_DELTA_BUDGET_MS = 50;
const PRECOPY_MAX_ROUNDS = 5;

/** Resolves with 'cancelled' once the user asks to cancel migration `id` (polled); `stop()` ends the polling. */
function untilCancelled(d: MigrationDeps, id: string): { promise: Promise<'cancelled'>; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const promise = new Promise<'cancelled'>((resolve) => {
    const check = async (): Promise<void> => {
      if (stopped) return;
      const kv = await d.store.get<Migration>(keys.migration(id)).catch(() => undefined);
      if (kv?.value.status.cancelRequested) resolve('cancelled');
      else if (!stopped) timer = setTimeout(() => void check(), 200);
    };
    void check();
  });
  return { promise, stop: () => { stopped = true; clearTimeout(timer); } };
}

/** How often the bytes received by the target are recorded while memory moves (movesMemory). */
const PROGRESS_MS = 300;
/** How often Cleanup asks whether a post-copy transfer has finished. */
const CLEANUP_POLL_MS = 200;

/**
 * `--strategy auto` for a container above AUTO_STOP_COPY_MAX_BYTES: how fast it writes its memory
 * (the source's write tracker over AUTO_WRITE_WINDOW_MS) and how fast the link is (`--bandwidth`, else
 * AUTO_PROBE_BYTES the target fetches from the source the way the migration's files travel), with
 * the history line that says so. What cannot be measured is left out, and the line says why.
 */
async function measureForAuto(d: MigrationDeps, m: Migration, name: string): Promise<{ facts: { dirtyBytesPerSec?: number; bandwidthBytesPerSec?: number }; line: string }> {
  const id = m.metadata.name;
  const [src, dst] = [await agent(d, m.spec.from), await agent(d, m.spec.to)];
  const w = await src.client.migrateMeasureWrites(id, name, AUTO_WRITE_WINDOW_MS).catch((e: Error) => ({ why: e.message, bytesPerSec: undefined, pages: undefined, ms: undefined }));
  let link = m.spec.bandwidthBytesPerSec;
  let how = '--bandwidth';
  if (!link) {
    try {
      await src.client.migrateLayProbe(id, AUTO_PROBE_BYTES);
      const r = await dst.client.migrateMeasureLink(id, src.url);
      [link, how] = [r.bytesPerSec, `${formatBytes(r.bytes)} fetched in ${r.ms} ms`];
    } catch (e) {
      how = `not measured: ${(e as Error).message}`;
    }
  }
  const writes = w.bytesPerSec !== undefined ? `${formatBytes(w.bytesPerSec)}/s (${w.pages} pages written in ${w.ms} ms)` : `not measured (${w.why})`;
  return {
    facts: { ...(w.bytesPerSec !== undefined ? { dirtyBytesPerSec: w.bytesPerSec } : {}), ...(link ? { bandwidthBytesPerSec: link } : {}) },
    line: `auto measured: writes ${writes}; link ${link ? `${formatBytes(link)}/s (${how})` : `(${how})`}`,
  };
}

/** What one drive of a migration remembers between phases (not persisted: a restart before the switch rolls back). */
interface DriveState {
  freezeStart?: number;
  /** Post-copy: host:port of the source's CRIU page server. */
  pageServer?: string;
  /** Stop-copy: host:port of the target's CRIU page server receiving the dump's pages. */
  streamTo?: string;
  /** Pre-copy: the rounds so far. */
  rounds?: RoundReport[];
  /** A change to the stored status that rides on the next phase's write (inside a freeze, each write counts). */
  patch?: (m: Migration) => void;
}

/** What the executor needs. */
export interface MigrationDeps {
  readonly store: Store;
  readonly agentToken: string;
  readonly log: (m: string) => void;
}

function machineOf(m: Migration): MachineState {
  return {
    phase: m.status.phase as MigrationPhase, strategy: m.status.strategy as MachineState['strategy'], round: m.status.round,
    checkOnly: m.spec.checkOnly, error: m.status.error, failedIn: m.status.failedIn as MigrationPhase | undefined,
  };
}

async function agent(d: MigrationDeps, node: string): Promise<{ client: AgentClient; url: string }> {
  const kv = await d.store.get<Node>(keys.node(node));
  if (!kv) throw new Error(`node ${node} is not registered`);
  return { client: new AgentClient({ url: kv.value.status.address, token: d.agentToken }), url: kv.value.status.address };
}

/** The `volumes` option of the freeze and restore calls: the container's host-local volumes, if any. */
function volumesOf(c: Container): { volumes?: string[] } {
  const v = localVolumeNames(c.spec.volumes);
  return v.length > 0 ? { volumes: v } : {};
}

async function container(d: MigrationDeps, m: Migration): Promise<Container> {
  const kv = await d.store.get<Container>(keys.container(m.spec.container));
  if (!kv || kv.value.metadata.uid !== m.spec.containerUid) throw new Error(`container ${m.spec.container} no longer exists`);
  return kv.value;
}

/** Runs the current phase's work and returns the event it produced. */
async function perform(d: MigrationDeps, m: Migration, t: DriveState): Promise<MigrationEvent> {
  const name = m.spec.container;
  switch (m.status.phase) {
    case 'Pending':
      return { type: 'start' };
    case 'Precheck': {
      const c = await container(d, m);
      const st = (await d.store.get<ContainerStatus>(keys.status(name)))?.value;
      const snaps = await nodeSnapshots(d.store);
      const node = async (n: string) => {
        const s = snaps.find((x) => x.name === n);
        const kv = await d.store.get<Node>(keys.node(n));
        const imgs = (await d.store.get<NodeImages>(keys.nodeImages(n)))?.value.images ?? [];
        if (!s || !kv) throw new Error(`node ${n} is not registered`);
        return { ...s, facts: kv.value.status.facts, imageIds: imgs.map((i) => i.id), images: imgs, overlayIp: kv.value.status.network?.hostIp };
      };
      const from = await node(m.spec.from);
      const to = await node(m.spec.to);
      // The container's memory now: what auto decides by, what the progress bar measures against and
      // what the target makes room for. Its anonymous and shared memory where the cgroup tells it (a
      // checkpoint writes those, not the page cache the usage also counts), else its usage.
      const usage = st?.runtimeId && st.uid === c.metadata.uid
        ? await (await agent(d, m.spec.from)).client.stats(st.runtimeId).then((s) => Number(s.memoryDumpBytes ?? s.memoryUsageBytes) || undefined, () => undefined) : undefined;
      let strategy = m.status.strategy;
      if (m.spec.strategy === 'auto') {
        // Above the size where stop-copy wins anyway, auto decides by what it measures now.
        const measured = usage !== undefined && usage > AUTO_STOP_COPY_MAX_BYTES ? await measureForAuto(d, m, name) : undefined;
        const pick = autoStrategy({ memoryBytes: usage, postCopyAllowed: to.facts.userfaultfd === true, ...measured?.facts });
        strategy = pick.strategy;
        await save(d, m.metadata.name, (x) => {
          x.status.strategy = pick.strategy;
          x.status.strategyReason = pick.reason;
          if (measured) x.status.history.push({ phase: 'Precheck', at: new Date().toISOString(), message: measured.line });
        });
      }
      await save(d, m.metadata.name, (x) => { x.status.progress = { bytes: 0, ...(usage ? { totalBytes: usage } : {}), updatedAt: new Date().toISOString() }; });
      const image = findImage(from.images, c.spec.image);
      const results = precheck({
        name, phase: st?.uid === c.metadata.uid ? st.phase : 'pending', imageId: image?.id, memoryBytes: c.spec.resources.memoryBytes,
        cpus: c.spec.resources.cpus, migratable: st?.migratable, migrating: false, clusterIp: c.network?.ip,
      }, from, to, strategy);
      const others = (await d.store.list<Container>(keys.containers)).items.map((kv) => kv.value)
        .filter((o) => o.metadata.uid !== c.metadata.uid && o.placement?.node === m.spec.from).map((o) => ({ name: o.metadata.name, volumes: o.spec.volumes }));
      results.push(volumeCheck(name, c.spec.volumes, others));
      await save(d, m.metadata.name, (x) => { x.status.checks = results; });
      const bad = blocking(results);
      if (!image || !to.imageIds.includes(image.id)) bad.push({ check: 'image-on-target', ok: false, reason: `${to.name} does not hold ${c.spec.image}; import it there first (image copy between nodes comes with the registry)` });
      return bad.length > 0 ? { type: 'precheck-failed', reasons: bad.map((r) => r.reason) } : { type: 'precheck-passed' };
    }
    case 'Prepare': {
      // Stop-copy: the target takes the dump's pages as they are dumped (a CRIU page server), so
      // memory crosses once, inside the dump, instead of dump-to-disk then copy.
      // The writable layer and host-local volumes: copied whole while the container runs; the freeze
      // sends what changed since.
      const volumes = localVolumeNames((await container(d, m)).spec.volumes);
      const [src, dst] = [await agent(d, m.spec.from), await agent(d, m.spec.to)];
      const packed = await src.client.migratePackVolumes(m.metadata.name, name, volumes);
      const got = await dst.client.migrateFetchVolumes(m.metadata.name, src.url, volumes, m.spec.bandwidthBytesPerSec);
      if (volumes.length > 0) {
        await save(d, m.metadata.name, (x) => {
          x.status.history.push({ phase: 'Prepare', at: new Date().toISOString(), message: `writable layer and local volumes ${volumes.join(', ')}: ${formatBytes(got.bytes)} copied to ${m.spec.to} (${formatBytes(packed.bytes)} packed)` });
        });
      }
      // The container's memory (measured at Precheck) lets the target put the image on its tmpfs.
      if (m.status.strategy === 'stop-copy') t.streamTo = (await dst.client.migratePrepare(m.metadata.name, m.status.progress?.totalBytes)).pageServer;
      return { type: 'prepared' };
    }
    case 'Copy': {
      // One pre-copy round while the container runs: the source dumps and diffs against the last
      // round, the target pulls only what changed. A cancel does not wait for the round to end.
      const src = await agent(d, m.spec.from);
      const dst = await agent(d, m.spec.to);
      const round = m.status.round;
      const work = (async () => {
        const t0 = Date.now();
        const r = await src.client.migrateRound(m.metadata.name, name, round);
        const f = await dst.client.migrateFetchRound(m.metadata.name, src.url, round, m.spec.bandwidthBytesPerSec, round === 0 ? m.status.progress?.totalBytes : undefined);
        return { ...r, fetchMs: f.ms, bytes: f.bytes, durationMs: Date.now() - t0 };
      })();
      const cancelled = untilCancelled(d, m.metadata.name);
      const r = await Promise.race([work, cancelled.promise]).finally(() => cancelled.stop());
      if (r === 'cancelled') { void work.catch(() => undefined); return { type: 'cancel' }; }
      // The link's speed as measured by this round (or --bandwidth), for the convergence goal.
      const rate = m.spec.bandwidthBytesPerSec ?? (r.fetchMs > 0 ? (1000 * r.bytes) / r.fetchMs : 1e9);
      t.rounds = [...(t.rounds ?? []), { sentBytes: r.sentBytes, durationMs: r.durationMs }];
      const verdict = precopyDone(t.rounds, { targetFreezeMs: PRECOPY_DELTA_BUDGET_MS, bandwidthBytesPerSec: Math.max(1, rate), maxRounds: PRECOPY_MAX_ROUNDS });
      await save(d, m.metadata.name, (x) => {
        x.status.bytes += r.sentBytes;
        x.status.history.push({ phase: 'Copy', at: new Date().toISOString(), message: `round ${round + 1}: ${formatBytes(r.sentBytes)}${r.pagesChanged !== undefined ? ` (${r.pagesChanged} pages changed)` : ''}, ${r.tracked ? 'read while it ran (write tracker)' : 'dumped (paused while CRIU read it)'}; ${verdict.reason}` });
      });
      return { type: 'round-done', converged: verdict.done };
    }
    case 'Freeze': {
      if (m.status.strategy === 'stop-copy' && !t.streamTo) throw new Error('the target page server is unknown (the manager restarted after Prepare)');
      const preCopyRound = m.status.strategy === 'pre-copy' ? m.status.round - 1 : undefined;
      if (preCopyRound !== undefined && preCopyRound < 0) throw new Error('pre-copy: no round was copied before the freeze');
      const src = await agent(d, m.spec.from);
      if (preCopyRound !== undefined) {
        // The target asks the source for the final delta now; the source answers once the freeze has
        // made it, so the target starts on it at once instead of when this relays it (≈ 15 ms later).
        // Without it (an older agent, an error) the restore fetches it as before.
        const to = await agent(d, m.spec.to);
        await to.client.migratePrefetch(m.metadata.name, src.url, preCopyRound, m.spec.bandwidthBytesPerSec)
          .catch((e: Error) => d.log(`migration ${m.metadata.name}: the target cannot fetch the final delta ahead (${e.message})`));
      }
      // New requests wait at the entry point (or go to other replicas) instead of hitting a frozen process.
      const c = await container(d, m);
      const held = await holdAtEntryPoints(d.store, c, m.metadata.name);
      if (held) await save(d, m.metadata.name, (x) => { x.status.history.push({ phase: 'Freeze', at: new Date().toISOString(), message: held }); });
      t.freezeStart = Date.now();
      const r = await src.client.migrateFreeze(m.metadata.name, name, {
        ...(m.status.strategy === 'post-copy' ? { postCopy: true } : {}), ...(t.streamTo ? { streamTo: t.streamTo } : {}),
        ...(preCopyRound !== undefined ? { preCopyRound } : {}), ...volumesOf(c),
      });
      t.pageServer = r.pageServer;
      const fd = r.finalDelta;
      // Written with the next phase (one store write fewer inside the freeze).
      t.patch = (x) => {
        x.status.bytes = r.bytes;
        if (fd) {
          const how = !fd.tracked ? 'every page compared with it'
            : `the pages written since it began, as the write tracker found them; ${fd.unchangedLeftOut ? 'CRIU dumped only those' : 'CRIU pinned every page'}`;
          x.status.history.push({ phase: 'Freeze', at: new Date().toISOString(), message: `final delta after round ${m.status.round}: ${fd.pagesSent} of ${fd.pagesTotal} pages (${how})` });
        }
      };
      return { type: 'frozen' };
    }
    case 'Transfer':
      return { type: 'transferred' }; // the target pulls the archive from the source as it restores
    case 'Restore': {
      const c = await container(d, m);
      const epoch = (c.placement?.epoch ?? 0) + 1;
      // Same uid, same address: the restored container keeps its cluster-network interface.
      const a: Assignment = await assignmentOf(d.store, c, epoch, m.spec.to);
      const src = await agent(d, m.spec.from);
      if (m.status.strategy === 'post-copy' && !t.pageServer) throw new Error('post-copy: the source page server is unknown (the manager restarted after the freeze)');
      const r = await (await agent(d, m.spec.to)).client.migrateRestore(m.metadata.name, src.url, a, {
        ...(t.pageServer ? { pageServer: t.pageServer } : {}), ...(m.spec.bandwidthBytesPerSec ? { bytesPerSec: m.spec.bandwidthBytesPerSec } : {}),
        ...(m.status.strategy === 'pre-copy' ? { preCopyRound: m.status.round - 1 } : {}), expectBytes: m.status.bytes, ...volumesOf(c),
      });
      // What reached the target before the switch (streamed pages included); written with the next phase.
      t.patch = (x) => { x.status.targetRuntimeId = r.runtimeId; x.status.bytes = Math.max(x.status.bytes, r.bytes);
        if (x.status.progress) x.status.progress = { ...x.status.progress, bytes: r.bytes, updatedAt: new Date().toISOString() };
      };
      return { type: 'restored' };
    }
    case 'Switch': {
      // The store now says the container lives on the target; the old node's assignment goes, and its
      // agent kills the frozen copy without thawing it.
      const t0 = performance.now();
      const kv = await mutate<Container>(d.store, keys.container(name), (c) => {
        if (c.metadata.uid !== m.spec.containerUid) return undefined;
        if (c.placement?.node === m.spec.to) return undefined;
        c.placement = { node: m.spec.to, epoch: (c.placement?.epoch ?? 0) + 1, scheduledAt: new Date().toISOString(), reason: `live-migrated from ${m.spec.from} by ${m.metadata.name}` };
        return c;
      });
      const c = kv.value;
      await put<Assignment>(d.store, keys.assignment(m.spec.to, name), await assignmentOf(d.store, c, c.placement!.epoch, m.spec.to));
      // Now (and only now) the restored processes run; the target's agent also does this itself when
      // the new assignment reaches it, so a lost call here only delays it.
      const t1 = performance.now();
      await (await agent(d, m.spec.to)).client.migrateContinue(m.metadata.name, name);
      const t2 = performance.now();
      await releaseHold(d.store, name);
      const freezeMs = t.freezeStart ? Date.now() - t.freezeStart : undefined;
      d.log(`migration ${m.metadata.name}: switched ${name}: store ${Math.round(t1 - t0)} ms, continue ${Math.round(t2 - t1)} ms, hold released ${Math.round(performance.now() - t2)} ms`);
      // The old node's assignment goes once the copy runs and the entry point lets requests through
      // (outside the freeze): its agent then kills the frozen, cut-off source. A manager that dies
      // before this does it again (Switch is replayed).
      await remove(d.store, keys.assignment(m.spec.from, name));
      if (freezeMs !== undefined) await save(d, m.metadata.name, (x) => { x.status.freezeMs = freezeMs; });
      // The switch is in the store and the target runs: a manager dying here must finish, not undo.
      failpoint('migrate:after-switch');
      return { type: 'switched' };
    }
    case 'Cleanup': {
      // Post-copy: the target holds the container only once every page has arrived; until then the
      // source's CRIU serves them. A failed transfer loses the container's memory: fatal.
      // The source's own cleanup is best effort (its node may be gone; what it leaves is files).
      const lazy = m.status.strategy === 'post-copy';
      for (const n of [m.spec.to, m.spec.from]) {
        const mustAnswer = lazy && n === m.spec.to;
        for (let waited = 0; ; waited += CLEANUP_POLL_MS) {
          let r: { done: boolean; error?: string };
          try {
            r = await (await agent(d, n)).client.migrateCleanup(m.metadata.name);
          } catch (e) {
            if (mustAnswer) throw e;
            break;
          }
          if (r.error) return { type: 'error', fatal: true, message: `${lazy ? `post-copy transfer from ${m.spec.from}` : `copying the memory of ${name} in on ${m.spec.to}`} failed; ${name} restarts from its image per its restart policy: ${r.error}` };
          if (r.done) break;
          if (waited === 0) d.log(`migration ${m.metadata.name}: waiting for the last pages of ${name} to ${lazy ? `reach ${m.spec.to}` : `be copied in on ${m.spec.to}`}`);
          await new Promise((res) => setTimeout(res, CLEANUP_POLL_MS));
        }
      }
      return { type: 'cleaned' };
    }
    case 'RollingBack': {
      const c = await container(d, m).catch(() => undefined);
      try {
        await (await agent(d, m.spec.to)).client.migrateAbort(m.metadata.name, name);
      } catch (e) {
        // The target may hold a restored copy: thawing the source now could make two. Wait while the
        // target node is alive; once its lease is gone its agent aborts the copy itself on return.
        if (await d.store.get(keys.nodeAlive(m.spec.to))) throw new Error(`cannot remove the copy on ${m.spec.to} yet: ${(e as Error).message}`, { cause: e });
      }
      try {
        if (c) await (await agent(d, m.spec.from)).client.migrateResume(m.metadata.name, name, c.spec.ports);
        await releaseHold(d.store, name);
        return { type: 'rolled-back' };
      } catch (e) {
        // A live source agent that refuses is retried; a dead one thaws its copy itself when it returns
        // (it sees the migration ended with the container still assigned to it).
        if (await d.store.get(keys.nodeAlive(m.spec.from))) throw new Error(`cannot resume on ${m.spec.from} yet: ${(e as Error).message}`, { cause: e });
        d.log(`migration ${m.metadata.name}: ${m.spec.from} is down; its agent resumes ${name} when it returns`);
        return { type: 'rolled-back' };
      }
    }
    default:
      throw new Error(`no work for phase ${m.status.phase}`);
  }
}

async function save(d: MigrationDeps, id: string, fn: (m: Migration) => void): Promise<Migration> {
  return (await mutate<Migration>(d.store, keys.migration(id), (m) => { fn(m); return m; })).value;
}

/** Applies a step result to the stored object, with the change `t` still holds (see DriveState.patch). */
async function apply(d: MigrationDeps, id: string, state: MachineState, message?: string, t?: DriveState): Promise<Migration> {
  const patch = t?.patch;
  if (t) t.patch = undefined;
  const m = await applyState(d, id, state, message, patch);
  // However it ended, nothing may stay held at the entry point.
  if (TERMINAL.has(state.phase)) await releaseHold(d.store, m.spec.container);
  return m;
}

async function applyState(d: MigrationDeps, id: string, state: MachineState, message?: string, patch?: (m: Migration) => void): Promise<Migration> {
  return save(d, id, (m) => {
    patch?.(m);
    const changed = m.status.phase !== state.phase;
    m.status.phase = state.phase;
    m.status.round = state.round;
    if (state.error !== undefined) m.status.error = state.error;
    if (state.failedIn !== undefined) m.status.failedIn = state.failedIn;
    if (changed) m.status.history.push({ phase: state.phase, at: new Date().toISOString(), ...(message ? { message } : {}) });
    if (TERMINAL.has(state.phase)) {
      m.status.finishedAt = new Date().toISOString();
      m.status.totalMs = Date.parse(m.status.finishedAt) - Date.parse(m.metadata.createdAt);
    }
  });
}

/** While `phase` runs, records how many bytes the target has received, a few times a second. */
function watchProgress(d: MigrationDeps, m: Migration): () => void {
  let stopped = false;
  void (async () => {
    const target = await agent(d, m.spec.to).catch(() => undefined);
    while (!stopped && target) {
      await new Promise((r) => setTimeout(r, PROGRESS_MS));
      if (stopped) break;
      const r = await target.client.migrateReceived(m.metadata.name).catch(() => undefined);
      if (r && !stopped) await save(d, m.metadata.name, (x) => { x.status.progress = { ...x.status.progress, bytes: r.bytes, updatedAt: new Date().toISOString() }; }).catch(() => undefined);
    }
  })();
  return () => { stopped = true; };
}

/** Drives one migration until it ends. */
async function drive(d: MigrationDeps, id: string, recovering: boolean): Promise<void> {
  const t: DriveState = {};
  let kv = await d.store.get<Migration>(keys.migration(id));
  if (!kv) return;
  if (recovering) {
    const r = recover(machineOf(kv.value));
    if (r.ok && r.state.phase !== kv.value.status.phase) await apply(d, id, r.state, 'recovered after a restart');
  }
  /** The object as the last write left it (mutate read it just before): no read before the next phase. */
  let written: Migration | undefined;
  for (;;) {
    let m = written;
    written = undefined;
    if (!m) {
      kv = await d.store.get<Migration>(keys.migration(id));
      if (!kv) return;
      m = kv.value;
    }
    if (TERMINAL.has(m.status.phase as MigrationPhase)) return;
    let s = machineOf(m);
    if (m.status.cancelRequested && m.status.phase !== 'RollingBack') {
      const c = step(s, { type: 'cancel' });
      if (c.ok) {
        await apply(d, id, c.state, 'cancel requested');
        continue;
      }
    }
    let ev: MigrationEvent;
    const stopProgress = movesMemory(m.status) ? watchProgress(d, m) : undefined;
    try {
      ev = await perform(d, m, t);
    } catch (e) {
      d.log(`migration ${id} in ${m.status.phase}: ${(e as Error).message}`);
      ev = { type: 'error', message: `${m.status.phase}: ${(e as Error).message}` };
    } finally {
      stopProgress?.();
    }
    const r = step(s, ev);
    if (!r.ok) {
      d.log(`migration ${id}: ${r.reason}`);
      s = { ...s, error: r.reason };
      await apply(d, id, { ...s, phase: 'Failed' }, r.reason, t);
      return;
    }
    if (ev.type === 'error' && r.state.phase === m.status.phase) await new Promise((res) => setTimeout(res, 1000)); // retry forward after the switch
    written = await apply(d, id, r.state, undefined, t);
  }
}

/** Starts the executor: every migration that has not ended is driven (after a recovery step on start). */
export function startMigrationsController(d: MigrationDeps): Loop {
  const running = new Map<string, Promise<void>>();
  let firstPass = true;
  const loop = startLoop({
    store: d.store, prefixes: [keys.migrations],
    listNames: async () => {
      const names = (await d.store.list<Migration>(keys.migrations)).items.filter((kv) => !TERMINAL.has(kv.value.status.phase as MigrationPhase)).map((kv) => kv.value.metadata.name);
      return names;
    },
    reconcile: async (id) => {
      if (running.has(id)) return;
      const kv = await d.store.get<Migration>(keys.migration(id));
      if (!kv || TERMINAL.has(kv.value.status.phase as MigrationPhase)) return;
      const recovering = firstPass && kv.value.status.phase !== 'Pending';
      const p = drive(d, id, recovering).catch((e: Error) => d.log(`migration ${id}: ${e.message}`)).finally(() => running.delete(id));
      running.set(id, p);
    },
    onError: (n, e) => d.log(`migrations ${n}: ${(e as Error).message}`),
  });
  setTimeout(() => { firstPass = false; }, 2000).unref();
  return {
    async stop() { await loop.stop(); },
    async idle() { await loop.idle(); await Promise.all(running.values()); },
  };
}
