/**
 * The entry point's control plane: owns one HAProxy (master-worker) and makes it match the desired
 * routes through the runtime API, reloading (hitlessly) only when the pool of backends must grow.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { lbPaths, renderConfig, renderMaps } from './config.ts';
import { lbErrors } from './errors.ts';
import type { ApplyResult, DrainPhase, DrainResult, LbEvent } from './events.ts';
import { afterReloadCommands, emptyState, heldCountVar, planApply } from './plan.ts';
import { uniformShape } from './pool.ts';
import { checkConfig, HaproxyProcess, resolveHaproxy, stopLeftover } from './process.ts';
import { resolveSettings, type LbOptions } from './settings.ts';
import { parseShowStat, parseVar, serviceStats, type LbServiceStats, type ProcInfo } from './stat.ts';
import type { LbPaths, LbRoute, LbServer, LbSettings, LbState, RuntimeCommand } from './types.ts';

const HOLD_LUA = fileURLToPath(new URL('./hold.lua', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A running entry point. */
export class Lb {
  private state: LbState;
  /** A runtime step failed midway: HAProxy's state is unknown until a reload rewrites it whole. */
  private stale = false;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;

  private constructor(
    private readonly proc: HaproxyProcess,
    /** The checked settings in force. */
    readonly settings: LbSettings,
    /** Files in the state dir. */
    readonly paths: LbPaths,
    private readonly bin: string,
    private readonly options: LbOptions,
    private readonly createdDir: boolean,
  ) {
    this.state = emptyState(uniformShape(settings.pool));
  }

  /** Writes the base config into the state dir, checks it with `haproxy -c`, and starts HAProxy. */
  static async start(options: LbOptions): Promise<Lb> {
    const settings = resolveSettings(options);
    const bin = resolveHaproxy(options.haproxy);
    const paths = lbPaths(options.stateDir);
    const createdDir = !existsSync(paths.dir);
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    const state = emptyState(uniformShape(settings.pool));
    let proc: HaproxyProcess;
    try {
      writeFileSync(paths.lua, readFileSync(HOLD_LUA));
      writeState(paths, settings, state, paths.config);
      await checkConfig(bin, paths.config);
      // A crashed lb's HAProxy would hold the ports and sockets; the new one takes over.
      await stopLeftover(paths);
      proc = await HaproxyProcess.start(bin, paths);
    } catch (e) {
      removeFiles(paths, createdDir);
      throw e;
    }
    const lb = new Lb(proc, settings, paths, bin, options, createdDir);
    lb.emit({ type: 'started', masterPid: proc.pid, workerPid: await proc.workerPid() });
    return lb;
  }

  /** PID of the HAProxy master. */
  get pid(): number {
    return this.proc.pid;
  }

  /** The routes in force, holds resolved (a copy). */
  routes(): LbRoute[] {
    return structuredClone(Object.values(this.state.routes));
  }

  /** The full believed state (pool shape, routes, slot of each service and replica), for debugging. */
  snapshot(): LbState {
    return structuredClone(this.state);
  }

  /**
   * Makes HAProxy serve exactly `routes`: validates them (nothing changes on an error), then sends
   * the runtime commands of the diff, or reloads hitlessly onto a bigger pool when one is needed.
   */
  apply(routes: readonly LbRoute[]): Promise<ApplyResult> {
    return this.exclusive(async () => {
      const plan = planApply(this.state, routes, this.settings, this.paths, { allowGrow: this.options.allowReload !== false });
      if (plan.kind === 'reload' || this.stale) {
        const reason = plan.kind === 'reload' ? `pool too small: ${plan.reason}` : 'repairing after a failed runtime command';
        const commands = await this.reloadTo(plan.next, reason);
        this.emit({ type: 'applied', commands: commands.length, reloaded: true });
        return { commands, reloaded: true, reason };
      }
      await this.runPlanned(plan.commands);
      this.state = plan.next;
      this.emit({ type: 'applied', commands: plan.commands.length, reloaded: false });
      return { commands: plan.commands.map((c) => c.command), reloaded: false };
    });
  }

  /** Holds (`on`) or releases new requests of a service at HAProxy; other services are untouched. */
  hold(service: string, on: boolean): Promise<void> {
    return this.exclusive(async () => {
      this.routeOf(service);
      await this.change((routes) => routes.map((r) => (r.service === service ? { ...r, hold: on } : r)));
      this.emit({ type: 'hold', service, on });
    });
  }

  /**
   * Takes a server out gently: state drain (no new requests; sticky clients too), wait until its
   * sessions reach 0 or `deadlineMs` passes (then cut what is left), then maint and remove it from
   * the route. A later `apply` listing it again brings it back.
   */
  async drain(service: string, server: string, deadlineMs: number, pollMs = 100): Promise<DrainResult> {
    const report = (phase: DrainPhase, sessions: number): void => this.emit({ type: 'drain', service, server, phase, sessions });
    const slotKey = await this.exclusive(async () => {
      const route = this.routeOf(service);
      if (!route.servers.some((s) => s.name === server)) throw lbErrors.SERVER_NOT_FOUND({ service, server });
      await this.change((routes) => withServer(routes, service, server, (s) => ({ ...s, state: 'drain' })));
      return this.slotKey(service, server);
    });
    report('draining', -1);
    const deadline = Date.now() + deadlineMs;
    let sessions = -1;
    for (;;) {
      if (this.slotKey(service, server) !== slotKey || this.serverOf(service, server)?.state !== 'drain') {
        report('superseded', sessions);
        return { service, server, drained: false, sessionsLeft: Math.max(sessions, 0), removed: false };
      }
      // Only this backend's servers (type 4): cheap enough to poll.
      const stat = await this.proc.admin.send(`show stat ${slotKey?.split('/')[0]} 4 -1`);
      const row = parseShowStat(stat).find((r) => `${r.proxy}/${r.name}` === slotKey);
      sessions = (row?.sessions ?? 0) + (row?.queued ?? 0);
      if (sessions === 0 || Date.now() >= deadline) break;
      report('waiting', sessions);
      await sleep(pollMs);
    }
    report(sessions === 0 ? 'drained' : 'deadline', sessions);
    return this.exclusive(async () => {
      if (this.slotKey(service, server) !== slotKey || this.serverOf(service, server)?.state !== 'drain') {
        report('superseded', sessions);
        return { service, server, drained: sessions === 0, sessionsLeft: sessions, removed: false };
      }
      await this.change((routes) => routes.map((r) => (r.service === service ? { ...r, servers: r.servers.filter((s) => s.name !== server) } : r)));
      if (sessions > 0) await this.proc.admin.run({ command: `shutdown sessions server ${slotKey}` });
      report('removed', sessions);
      return { service, server, drained: sessions === 0, sessionsLeft: sessions, removed: true };
    });
  }

  /** Per service and replica: HAProxy's state, current and total sessions and requests, check status, holds. */
  async stats(): Promise<LbServiceStats[]> {
    this.assertRunning();
    const state = this.state;
    const rows = parseShowStat(await this.proc.admin.send('show stat'));
    const waiting = new Map<string, number>();
    for (const slot of Object.values(state.slots)) {
      waiting.set(slot.backend, parseVar(await this.proc.admin.send(`get var ${heldCountVar(slot.backend)}`)) ?? 0);
    }
    return serviceStats(rows, state, waiting);
  }

  /** HAProxy's processes and reload count as the master reports them, plus the worker on the admin socket. */
  async processInfo(): Promise<ProcInfo & { workerPid: number }> {
    this.assertRunning();
    return { ...(await this.proc.procInfo()), workerPid: await this.proc.workerPid() };
  }

  /** Stops HAProxy (by PID) and removes the files the lb wrote (and the state dir if it made it). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.chain.catch(() => undefined);
    await this.proc.stop();
    removeFiles(this.paths, this.createdDir);
    this.emit({ type: 'stopped', masterPid: this.proc.pid });
  }

  /** Plans and runs a change of the current routes (never grows the pool: slots stay where they are). */
  private async change(edit: (routes: LbRoute[]) => LbRoute[]): Promise<void> {
    // Edits keep every service in its slot, so this never needs to grow the pool.
    const plan = planApply(this.state, edit(this.routes()), this.settings, this.paths, { allowGrow: false });
    if (this.stale || plan.kind === 'reload') {
      await this.reloadTo(plan.next, 'repairing after a failed runtime command');
      return;
    }
    await this.runPlanned(plan.commands);
    this.state = plan.next;
  }

  private async runPlanned(commands: readonly RuntimeCommand[]): Promise<void> {
    try {
      await this.proc.admin.runAll(commands);
    } catch (e) {
      this.stale = true;
      throw e;
    }
  }

  /** Rewrites config and maps for `next`, checks them, reloads through the master, then sends what config cannot say. */
  private async reloadTo(next: LbState, reason: string): Promise<string[]> {
    const staged = `${this.paths.config}.next`;
    writeState(this.paths, this.settings, next, staged);
    await checkConfig(this.bin, staged);
    renameSync(staged, this.paths.config);
    const { before, after } = await this.proc.reload();
    this.stale = true;
    const extra = afterReloadCommands(next);
    await this.proc.admin.runAll(extra);
    this.state = next;
    this.stale = false;
    this.emit({ type: 'reloaded', reason, oldWorkerPid: before.workers[0]?.pid ?? 0, newWorkerPid: after.workers.find((w) => !before.workers.some((b) => b.pid === w.pid))?.pid ?? 0 });
    return extra.map((c) => c.command);
  }

  private routeOf(service: string): LbRoute {
    const r = this.state.routes[service];
    if (!r) throw lbErrors.SERVICE_NOT_FOUND({ service });
    return r;
  }

  private serverOf(service: string, server: string): LbServer | undefined {
    return this.state.routes[service]?.servers.find((s) => s.name === server);
  }

  private slotKey(service: string, server: string): string | undefined {
    const slot = this.state.slots[service];
    const idx = slot?.servers[server];
    return slot && idx !== undefined ? `${slot.backend}/s${idx}` : undefined;
  }

  private assertRunning(): void {
    if (this.stopped || !this.proc.running) throw lbErrors.HAPROXY_NOT_RUNNING();
  }

  /** Runs `fn` after every earlier operation, so runtime command sequences never interleave. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.catch(() => undefined).then(() => {
      this.assertRunning();
      return fn();
    });
    this.chain = run;
    return run;
  }

  private emit(e: LbEvent): void {
    try { this.options.onEvent?.(e); } catch { /* a listener's fault is not the lb's */ }
  }
}

/** Routes with one server of one service replaced by `edit` of it. */
function withServer(routes: LbRoute[], service: string, server: string, edit: (s: LbServer) => LbServer): LbRoute[] {
  return routes.map((r) => (r.service === service ? { ...r, servers: r.servers.map((s) => (s.name === server ? edit(s) : s)) } : r));
}

/** Removes every file the lb writes, and the state dir when the lb made it (and nothing else is left in it). */
function removeFiles(p: LbPaths, createdDir: boolean): void {
  for (const f of [p.config, `${p.config}.next`, p.pidfile, p.adminSocket, p.masterSocket, p.lua, p.hostMap, p.pathMap, p.tcpMap, p.healthMap]) rmSync(f, { force: true });
  if (createdDir) try { rmdirSync(p.dir); } catch { /* the caller put other files there */ }
}

/** Writes the maps and the config (to `configPath`) for a state. */
function writeState(paths: LbPaths, settings: LbSettings, state: LbState, configPath: string): void {
  const maps = renderMaps(state);
  writeFileSync(paths.hostMap, maps.host);
  writeFileSync(paths.pathMap, maps.path);
  writeFileSync(paths.tcpMap, maps.tcp);
  writeFileSync(paths.healthMap, maps.health);
  writeFileSync(configPath, renderConfig(settings, paths, state));
}
