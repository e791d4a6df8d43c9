/**
 * The node's reconcile loop: holds the latest assignment per container name (from the manager's
 * watch) and drives the runtime until what runs matches it. Up to four containers are reconciled
 * at once, each name one at a time; exits, restarts and timers just queue the name again.
 */
import { randomBytes } from 'node:crypto';
import type { Assignment, ContainerStatus, Phase } from '../model/index.ts';
import { failoverRefusal } from '../model/index.ts';
import type { RuntimeState } from './runtime/index.ts';
import type { ContainerRecord } from './records.ts';
import { createAndStart, teardown, removeOrphan, type LifecycleDeps } from './lifecycle.ts';
import { decideRestart, STABLE_RUN_MS } from './restart.ts';
import { scanMigratability } from './dumpable.ts';
import { continueProcesses, reconnect } from './migrate.ts';

/** How soon a container whose exit wait failed is looked at again. */
const FAILED_WAIT_RETRY_MS = 250;

/** How many containers are reconciled at once (each name one at a time). */
const RECONCILE_CONCURRENCY = 4;

/** How long a start may take before the manager hears that it is under way. */
const SLOW_START_MS = 150;

/** What the reconciler needs besides the lifecycle steps. */
export interface ReconcilerDeps extends LifecycleDeps {
  readonly node: string;
  /** Prefix of runtime ids this agent creates (unique per agent/test run). */
  readonly idPrefix: string;
  readonly stopTimeoutMs: number;
  readonly report: (s: ContainerStatus) => void;
  readonly clearStatus: (name: string, uid: string) => void;
  /** True while migration `id` has not ended (asks the manager; true when it cannot tell). */
  readonly migrationActive: (id: string) => Promise<boolean>;
  /** True once this host has gone longer without the cluster than the fence limit (its shims kill). */
  readonly fenceDue?: () => boolean;
}

/** What a fenced container reports. */
const FENCED_MESSAGE = 'fenced: this host lost contact with the cluster; the container was killed and waits for the manager';

function sameResources(a: object | undefined, b: object | undefined): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
}

/** The reconcile loop of one node. */
export class Reconciler {
  private readonly d: ReconcilerDeps;
  private readonly assignments = new Map<string, Assignment>();
  private readonly records = new Map<string, ContainerRecord>();
  private readonly queue = new Set<string>();
  private readonly exitWatches = new Map<string, AbortController>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private readonly holds = new Map<string, Promise<unknown>>();
  /** The reconciles running now, by name. */
  private readonly inProgress = new Map<string, Promise<void>>();
  private synced = false;
  private stopped = false;
  private fencedNow = false;
  private drained: (() => void)[] = [];

  constructor(d: ReconcilerDeps) {
    this.d = d;
  }

  /** Loads records and removes what crashes left behind; runs before the first assignment list. */
  async adopt(): Promise<void> {
    for (const rec of await this.d.records.list()) this.records.set(rec.name, rec);
    const known = new Set([...this.records.values()].map((r) => r.runtimeId));
    for (const st of await this.d.runtime.list()) if (!known.has(st.id)) await removeOrphan(this.d, st.id);
    for (const id of await this.d.records.orphanDirs()) await removeOrphan(this.d, id);
    for (const rec of this.records.values()) this.enqueue(rec.name);
  }

  /**
   * This host fenced itself: nothing starts (nor restarts) until `unfence`; every container is marked
   * and killed (the shims kill them too once the stamp is stale; this covers a Down answer that came
   * while the stamp was still fresh). Teardowns of containers no longer assigned still happen.
   */
  async fence(): Promise<void> {
    this.fencedNow = true;
    const at = new Date().toISOString();
    for (const rec of this.records.values()) {
      // Only what the manager would start elsewhere is killed; the rest stays (nobody else runs it).
      const a = this.assignments.get(rec.name);
      if (rec.incoming || !a || a.uid !== rec.uid || failoverRefusal(a.spec) !== undefined) continue;
      rec.fencedAt = at;
      await this.d.records.save(rec).catch(() => undefined);
      await this.d.runtime.kill(rec.runtimeId, 'SIGKILL').catch(() => undefined);
    }
  }

  /** True while this host is fenced or past the fence limit: nothing may start. */
  private cutOff(): boolean {
    return this.fencedNow || this.d.fenceDue?.() === true;
  }

  /** The manager says the node is Ready again: fenced containers still assigned here start again (call resync next). */
  unfence(): void {
    this.fencedNow = false;
  }

  /** Replaces every assignment (after a list); containers no longer assigned are torn down. */
  resync(all: Assignment[]): void {
    this.assignments.clear();
    for (const a of all) this.assignments.set(a.name, a);
    this.synced = true;
    for (const n of new Set([...this.assignments.keys(), ...this.records.keys()])) this.enqueue(n);
  }

  /** Sets or replaces one assignment. */
  set(a: Assignment): void {
    this.assignments.set(a.name, a);
    this.enqueue(a.name);
  }

  /** Drops an assignment (the container is gone from this node's desired state). */
  delete(name: string): void {
    this.assignments.delete(name);
    this.enqueue(name);
  }

  /** The record of a container by name. */
  recordByName(name: string): ContainerRecord | undefined {
    return this.records.get(name);
  }

  /** Takes in the target copy of a migration (restored outside the reconcile loop). */
  addIncoming(rec: ContainerRecord): void {
    this.records.set(rec.name, rec);
  }

  /**
   * Leaves the container `name` alone until `until` settles (a post-copy source whose frozen memory
   * CRIU is still serving), then looks at it again.
   */
  hold(name: string, until: Promise<unknown>): void {
    this.holds.set(name, until);
    void until.catch(() => undefined).finally(() => {
      if (this.holds.get(name) === until) this.holds.delete(name);
      this.enqueue(name);
    });
  }

  /**
   * Runs `fn` with the loop kept away from container `name`: a reconcile of it in progress finishes
   * first, none starts meanwhile (e.g. a re-scan that would publish the ports a migration just closed).
   */
  async exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    let open = (): void => undefined;
    this.hold(name, new Promise<void>((r) => { open = r; }));
    try {
      while (this.inProgress.has(name)) await this.inProgress.get(name);
      return await fn();
    } finally {
      open();
    }
  }

  /** Forgets a record whose container was torn down outside the loop. */
  forget(name: string): void {
    this.records.delete(name);
  }

  /** The record of a container by runtime id (for the agent API). */
  recordById(runtimeId: string): ContainerRecord | undefined {
    return [...this.records.values()].find((r) => r.runtimeId === runtimeId);
  }

  /** Resolves when nothing is queued (tests). */
  idle(): Promise<void> {
    if (this.inProgress.size === 0 && this.queue.size === 0) return Promise.resolve();
    return new Promise((r) => this.drained.push(r));
  }

  /** Stops the loop; containers keep running (their supervisors hold them). */
  stop(): void {
    this.stopped = true;
    for (const ac of this.exitWatches.values()) ac.abort();
    for (const t of this.timers.values()) clearTimeout(t);
  }

  private enqueue(name: string): void {
    if (this.stopped) return;
    this.queue.add(name);
    this.pump();
  }

  /**
   * Starts reconciles of queued names, up to RECONCILE_CONCURRENCY at once and never two of one name
   * (a name queued again while it is in progress waits for that one). Starts mostly wait on runc, the
   * kernel and image files, so a host taking many containers at once (a failover, a drain) starts
   * them side by side.
   */
  private pump(): void {
    while (!this.stopped && this.inProgress.size < RECONCILE_CONCURRENCY) {
      let name: string | undefined;
      for (const n of this.queue) if (!this.inProgress.has(n)) { name = n; break; }
      if (name === undefined) break;
      this.queue.delete(name);
      const done = this.runOne(name);
      this.inProgress.set(name, done);
      void done.finally(() => {
        this.inProgress.delete(name);
        this.pump();
        if (this.inProgress.size === 0 && (this.queue.size === 0 || this.stopped)) for (const r of this.drained.splice(0)) r();
      });
    }
  }

  private async runOne(name: string): Promise<void> {
    try {
      await this.reconcile(name);
      this.failures.delete(name);
    } catch (e) {
      // Try again later (1 s, doubling to 30 s): a failed step must not leave the container stuck.
      const n = (this.failures.get(name) ?? 0) + 1;
      this.failures.set(name, n);
      const delay = Math.min(30_000, 1000 * 2 ** (n - 1));
      this.d.log(`reconcile ${name} failed (retry in ${delay} ms): ${(e as Error).message}`);
      this.later(name, delay);
    }
  }

  private later(name: string, ms: number): void {
    clearTimeout(this.timers.get(name));
    this.timers.set(name, setTimeout(() => { this.timers.delete(name); this.enqueue(name); }, Math.max(0, ms)));
  }

  private watchExit(rec: ContainerRecord): void {
    if (this.exitWatches.has(rec.runtimeId)) return;
    const ac = new AbortController();
    this.exitWatches.set(rec.runtimeId, ac);
    const done = (failed: boolean): void => {
      if (this.exitWatches.get(rec.runtimeId) === ac) this.exitWatches.delete(rec.runtimeId);
      // Also after a failed wait (e.g. the state dir was replaced by a restart while it polled, or the
      // runtime never had the container): look again, so an exit is never missed — a little later, or
      // a wait that fails at once would spin. An aborted wait was ended on purpose.
      if (ac.signal.aborted) return;
      if (failed) this.later(rec.name, FAILED_WAIT_RETRY_MS);
      // Before the first list from the manager there is nothing to decide (and an exit that is
      // already recorded would end the next wait at once, in a loop): resync() queues every container.
      else if (this.synced) this.enqueue(rec.name);
    };
    this.d.runtime.waitExit(rec.runtimeId, ac.signal).then(() => done(false), () => done(true));
  }

  private status(rec: ContainerRecord, a: Assignment | undefined, phase: Phase, pid: number, message?: string): void {
    this.d.report({
      name: rec.name, uid: rec.uid, node: this.d.node, epoch: rec.epoch, runtimeId: rec.runtimeId, phase,
      observedGeneration: a?.generation ?? rec.appliedGeneration, pid, ip: rec.ip,
      exitCode: rec.lastExit?.exitCode, oomKilled: rec.lastExit?.oomKilled, startedAt: rec.startedAt, finishedAt: rec.lastExit?.finishedAt,
      restartCount: rec.restartCount, message, appliedResources: rec.appliedResources, rootfsMode: rec.rootfsMode,
      migratable: phase === 'running' ? rec.migratable : { ok: false, reasons: [`it is ${phase}`], checkedAt: new Date().toISOString() },
      updatedAt: new Date().toISOString(),
    });
  }

  private async reconcile(name: string): Promise<void> {
    if (this.holds.has(name)) return;
    const a = this.assignments.get(name);
    let rec = this.records.get(name);
    // Before the first list from the manager we only adopt: never tear down on missing knowledge.
    if (!this.synced && !a) {
      if (rec) this.watchExit(rec);
      return;
    }
    // The target copy of a migration waits for its assignment (the switch); the manager aborts it otherwise.
    if (rec?.incoming && (!a || a.uid === rec.uid) && !a?.remove) {
      if (!a) {
        // Still waiting for the switch, unless its migration has ended without one (rolled back while
        // this agent was away): then this copy must go.
        if (!this.synced || (await this.d.migrationActive(rec.incoming))) return;
        this.d.log(`removing ${rec.name}: incoming copy of migration ${rec.incoming}, which ended without switching here`);
        await teardown(this.d, rec, 0);
        this.records.delete(name);
        return;
      }
      // The switch is recorded (this assignment): the restored processes may run now.
      await continueProcesses(this.d, rec);
    }
    // The frozen source copy of a migration is left alone until the manager resumes it or moves it away,
    // unless the migration ended while it stayed assigned here (rolled back while this agent was away).
    if (rec?.outgoing && a && !a.remove && a.uid === rec.uid) {
      if (!this.synced || (await this.d.migrationActive(rec.outgoing))) return;
      this.d.log(`resuming ${rec.name}: migration ${rec.outgoing} ended and left it here`);
      if ((await this.d.runtime.state(rec.runtimeId))?.status === 'paused') await this.d.runtime.resume(rec.runtimeId);
      // On the overlay it was cut off the network before it froze: connect it and announce it again.
      if (this.d.network.cluster) await reconnect(this.d, rec);
      rec.outgoing = undefined;
      await this.d.records.save(rec);
    }
    if (rec && (!a || a.remove || a.uid !== rec.uid)) {
      this.exitWatches.get(rec.runtimeId)?.abort();
      await teardown(this.d, rec, a?.remove === 'force' ? 0 : this.d.stopTimeoutMs);
      this.records.delete(name);
      this.d.clearStatus(rec.name, rec.uid);
      rec = undefined;
    }
    if (!a) return;
    if (a.remove) {
      this.d.clearStatus(a.name, a.uid);
      return;
    }
    const fresh = !rec;
    if (!rec) {
      rec = {
        name, uid: a.uid, runtimeId: `${this.d.idPrefix}${name.toLowerCase().slice(0, 40)}-${randomBytes(4).toString('hex')}`,
        epoch: a.epoch, appliedGeneration: 0, restartCount: 0, stoppedByUser: false, createdAt: new Date().toISOString(),
      };
      await this.d.records.save(rec);
      this.records.set(name, rec);
    }
    rec.epoch = a.epoch;
    // A record made just now has nothing in the runtime yet: skip the `runc state` call.
    const st = fresh ? undefined : await this.d.runtime.state(rec.runtimeId);
    if (a.spec.state === 'stopped') return this.keepStopped(rec, a, st);
    if (st && (st.status === 'running' || st.status === 'paused')) return this.keepRunning(rec, a, st);
    if (rec.fencedAt && (!st || st.status === 'stopped')) {
      // Killed by the fence, not by a fault: it runs again here (the manager kept it here), whatever its policy.
      if (this.cutOff()) return this.status(rec, a, 'failed', 0, FENCED_MESSAGE);
      this.d.log(`starting ${rec.name} again: fenced at ${rec.fencedAt}, and the manager kept it on this node`);
      rec.fencedAt = undefined;
      await this.d.records.save(rec);
      await this.start(rec, a, 'restarting');
      return;
    }
    if (st && st.status === 'stopped' && !rec.stoppedByUser) {
      // runc already says stopped but the supervisor is still draining output before it writes the exit
      // code: wait for it (the exit watch queues us again) rather than invent an exit.
      if (!st.exit && st.shimPid > 0) {
        this.watchExit(rec);
        return;
      }
      if (await this.handleExit(rec, a, st)) return;
    }
    if (rec.failedGeneration === a.generation && a.spec.restart.policy === 'no') {
      this.status(rec, a, 'failed', 0, rec.failure);
      return;
    }
    // Not running (never created, interrupted create, user start after stop, or restart due): create it.
    await this.start(rec, a, st === undefined ? 'creating' : 'restarting');
  }

  private async keepStopped(rec: ContainerRecord, a: Assignment, st: RuntimeState | undefined): Promise<void> {
    if (st && (st.status === 'running' || st.status === 'paused' || st.status === 'created' || st.status === 'creating')) {
      rec.stoppedByUser = true;
      await this.d.records.save(rec);
      this.exitWatches.get(rec.runtimeId)?.abort();
      await this.d.network.unpublish(rec.runtimeId);
      const exit = await this.d.runtime.stop(rec.runtimeId, this.d.stopTimeoutMs);
      if (exit) rec.lastExit = { ...exit };
    }
    rec.stoppedByUser = true;
    rec.appliedGeneration = a.generation;
    await this.d.records.save(rec);
    this.status(rec, a, 'stopped', 0, rec.lastExit ? `stopped (exit code ${rec.lastExit.exitCode})` : 'stopped');
  }

  private async keepRunning(rec: ContainerRecord, a: Assignment, st: RuntimeState): Promise<void> {
    rec.fencedAt = undefined;
    if (!sameResources(rec.appliedResources, a.spec.resources)) {
      await this.d.runtime.update(rec.runtimeId, a.spec.resources);
      rec.appliedResources = { ...a.spec.resources };
    }
    if (a.spec.ports.length > 0 && rec.ip) await this.d.network.publish(rec.runtimeId, rec.ip, a.spec.ports);
    rec.appliedGeneration = a.generation;
    await this.scan(rec);
    await this.d.records.save(rec);
    this.watchExit(rec);
    this.status(rec, a, 'running', st.pid);
  }

  /**
   * Re-checks whether each running container could be checkpointed now (call periodically). Not while
   * this host is cut off: what would fail over was killed, nothing may start and no report reaches the
   * manager, so a look at each would only spend a runtime call apiece (on a shared machine, CPU the
   * replacements need); the re-list after the fence is lifted looks at every one.
   */
  refreshMigratability(): void {
    if (this.cutOff()) return;
    for (const rec of this.records.values()) if (this.assignments.get(rec.name)?.spec.state === 'running') this.enqueue(rec.name);
  }

  private async scan(rec: ContainerRecord): Promise<void> {
    const found = await scanMigratability(await this.d.runtime.pids(rec.runtimeId).catch(() => []));
    // Keep the old timestamp when nothing changed, so an unchanged status is not re-sent.
    if (rec.migratable && rec.migratable.ok === found.ok && JSON.stringify(rec.migratable.reasons) === JSON.stringify(found.reasons)) return;
    rec.migratable = found;
  }

  /** Records an exit and applies the restart policy; returns true when the container stays down for now. */
  private async handleExit(rec: ContainerRecord, a: Assignment, st: RuntimeState): Promise<boolean> {
    const exit = st.exit ?? { exitCode: 255, finishedAt: new Date().toISOString() };
    const fresh = rec.lastExit?.finishedAt !== exit.finishedAt;
    const ranMs = Date.parse(exit.finishedAt) - Date.parse(rec.startedAt ?? exit.finishedAt);
    const step = ranMs >= STABLE_RUN_MS ? 0 : rec.backoffStep ?? 0;
    // The same inputs give the same decision: an exit seen again (a periodic re-scan) is reported as it
    // was the first time — "failed, gave up after 2 restarts" must not turn into a plain "exited".
    const decision = decideRestart(a.spec.restart, exit.exitCode, rec.restartCount, step);
    const stayMessage = (m: string): string => (exit.oomKilled ? `${m} (out of memory)` : m);
    if (fresh) {
      rec.lastExit = { ...exit };
      await this.d.network.unpublish(rec.runtimeId);
      if (decision.action === 'stay') {
        rec.nextRestartAt = undefined;
        await this.d.records.save(rec);
        this.status(rec, a, decision.phase, 0, stayMessage(decision.message));
        return true;
      }
      rec.backoffStep = step + 1;
      rec.nextRestartAt = new Date(Date.now() + decision.delayMs).toISOString();
      await this.d.records.save(rec);
      this.status(rec, a, 'restarting', 0, decision.message);
    }
    if (!rec.nextRestartAt) {
      // Stayed down earlier. A restart policy changed since then does not start it by itself (as in Docker).
      if (decision.action === 'stay') this.status(rec, a, decision.phase, 0, stayMessage(decision.message));
      else this.status(rec, a, exit.exitCode === 0 ? 'exited' : 'failed', 0, `exited with code ${exit.exitCode}`);
      return true;
    }
    const wait = Date.parse(rec.nextRestartAt) - Date.now();
    if (wait > 0) {
      this.later(rec.name, wait);
      return true;
    }
    rec.restartCount += 1;
    return false;
  }

  private async start(rec: ContainerRecord, a: Assignment, phase: Phase): Promise<void> {
    // Cut off from the cluster: nothing starts (what runs on stays unless the manager would move it).
    if (this.cutOff()) {
      this.status(rec, a, 'failed', 0, FENCED_MESSAGE);
      return;
    }
    rec.stoppedByUser = false;
    // A start still going after SLOW_START_MS (an image unpack, a slow disk) is reported as
    // creating/restarting; a quick one goes straight to running: that report, and the manager's work
    // on it, would only compete with runc for the CPU in the middle of the start.
    const slow = setTimeout(() => this.status(rec, a, phase, 0), SLOW_START_MS);
    let st: RuntimeState;
    try {
      st = await createAndStart(this.d, rec, a);
    } catch (e) {
      clearTimeout(slow);
      const msg = (e as Error).message;
      rec.appliedGeneration = a.generation;
      rec.failedGeneration = a.generation;
      rec.failure = msg;
      await this.d.records.save(rec);
      this.d.log(`create ${rec.name} failed: ${msg}`);
      if (a.spec.restart.policy !== 'no') {
        const step = rec.backoffStep ?? 0;
        rec.backoffStep = step + 1;
        const delay = Math.min(60_000, 1000 * 2 ** Math.min(step, 6));
        this.status(rec, a, 'restarting', 0, `${msg}; retrying in ${delay} ms`);
        this.later(rec.name, delay);
      } else {
        this.status(rec, a, 'failed', 0, msg);
      }
      return;
    }
    clearTimeout(slow);
    if (rec.failedGeneration !== undefined) {
      rec.failedGeneration = undefined;
      rec.failure = undefined;
      await this.d.records.save(rec);
    }
    await this.scan(rec);
    this.status(rec, a, 'running', st.pid);
    this.watchExit(rec);
  }
}
