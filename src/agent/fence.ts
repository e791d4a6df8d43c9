/**
 * Self-fencing. The agent keeps one file's time at its last contact with the cluster; every
 * container's shim kills its container once that file is older than the fence limit (shims outlive
 * the agent, so this also holds when the agent itself died). The manager declares a node Down — and
 * starts replacements elsewhere — only after the lease TTL plus a grace, later than the limit, so the
 * old copies are dead before new ones start. See src/model/health.ts for the timeline.
 *
 * A manager that is down for everyone must not kill every container in the cluster: when heartbeats
 * fail, the agent asks its peers whether they still reach the manager. Any peer that does → this host
 * is the one cut off: let the limit pass (fence). Peers reached, none reaches the manager → the
 * manager is down: keep the file fresh. No peer reachable → isolated: fence. No peers at all (one
 * node) → nothing could take over: keep the file fresh.
 */
import { mkdir, open, readFile, stat, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomicSync } from './small-files.ts';
import { fenceAfterMs, type NodeHealthState } from '../model/index.ts';

/** What a peer answers about its own contact with the manager. */
export interface PeerContact {
  /** Milliseconds since that agent's last successful heartbeat. */
  readonly managerOkAgoMs: number;
}

/** What the fence needs from the agent. */
export interface FenceOptions {
  /** The file the shims watch (`<data>/fence/stamp`). */
  readonly file: string;
  /** Lease TTL in seconds as the manager last said (updated on register). */
  leaseTtlSeconds: number;
  /** The manager's grace between Suspect and Down, in seconds (updated on register). */
  graceSeconds: number;
  /** Asks one peer (bounded by its own timeout); rejects when it cannot be reached. */
  readonly askPeer: (url: string) => Promise<PeerContact>;
  readonly log: (msg: string) => void;
  /** Called when this host has fenced itself (its containers are being killed by their shims). */
  readonly onFenced: () => void;
  /** Called when the manager says the node is Ready again after a fence: containers may start. */
  readonly onUnfenced: () => void;
  readonly now?: () => number;
}

/** How often the fence looks at its own state. */
const TICK_MS = 250;
/** How much before the limit the peers are asked (so their answer comes in time). */
const ASK_AHEAD_MS = 1500;
/** A peer whose last heartbeat is younger than this still reaches the manager. */
const PEER_FRESH_MS = 2500;

/** The fence of one agent. */
export class Fence {
  private readonly o: FenceOptions;
  private stampMs = 0;
  private lastOkMs = 0;
  private fenced = false;
  private asking = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private lastVerdict = '';
  /** Agent API URLs of the other nodes (kept in a file: an agent restarted while cut off must still know it has peers). */
  private peers: string[] = [];

  constructor(o: FenceOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  /** The shims' limit (ms without contact before they kill), from the current lease TTL. */
  get afterMs(): number {
    return fenceAfterMs(this.o.leaseTtlSeconds, this.o.graceSeconds);
  }

  /** True after this host fenced itself, until the manager says Ready again. */
  get isFenced(): boolean {
    return this.fenced;
  }

  /**
   * Reads the stamp left by a previous run: older than the limit means the shims have killed (or are
   * killing) what ran here, so nothing starts until the manager says the node is Ready. A first start
   * writes it.
   */
  async start(): Promise<void> {
    await mkdir(dirname(this.o.file), { recursive: true });
    try {
      const saved: unknown = JSON.parse(await readFile(this.peersFile(), 'utf8'));
      if (Array.isArray(saved)) this.peers = saved.filter((u): u is string => typeof u === 'string');
    } catch { /* none yet */ }
    try {
      this.stampMs = (await stat(this.o.file)).mtimeMs;
      if (this.now() - this.stampMs > this.afterMs) {
        this.fenced = true;
        this.o.log(`fence: the last contact with the cluster was ${Math.round((this.now() - this.stampMs) / 1000)} s ago: containers here were fenced; waiting for the manager before starting any`);
      }
    } catch {
      await this.stamp(this.now());
    }
    this.lastOkMs = this.fenced ? 0 : this.stampMs;
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  /**
   * A heartbeat (or register) sent at `sentAtMs` was answered with `state`. Down: the manager has
   * moved (or is moving) this node's containers away; nothing here may run again until it says Ready.
   */
  async contact(sentAtMs: number, state: NodeHealthState): Promise<void> {
    if (state === 'Down') {
      if (!this.fenced) {
        this.fenced = true;
        this.o.log('fence: the manager says this node is Down: its containers were failed over; fencing');
        this.o.onFenced();
      }
      return;
    }
    this.lastOkMs = Math.max(this.lastOkMs, sentAtMs);
    await this.stamp(sentAtMs);
    if (this.fenced && state === 'Ready') {
      this.fenced = false;
      this.o.log('fence: the manager says this node is Ready: containers may run again');
      this.o.onUnfenced();
    }
  }

  /** True once the stamp is older than the limit: the shims are killing; nothing may start. */
  due(): boolean {
    return this.stampMs > 0 && this.now() - this.stampMs > this.afterMs;
  }

  /** The other nodes' agent URLs (from the node list); saved when they change. */
  async setPeers(urls: string[]): Promise<void> {
    const sorted = [...new Set(urls)].sort();
    if (JSON.stringify(sorted) === JSON.stringify(this.peers)) return;
    this.peers = sorted;
    writeFileAtomicSync(this.peersFile(), JSON.stringify(sorted));
  }

  private peersFile(): string {
    return join(dirname(this.o.file), 'peers.json');
  }

  /** The manager's timing, from its answer to a register. */
  setTiming(leaseTtlSeconds: number, graceSeconds: number): void {
    this.o.leaseTtlSeconds = leaseTtlSeconds;
    this.o.graceSeconds = graceSeconds;
  }

  /** Milliseconds since the last successful heartbeat (what peers ask for). */
  managerOkAgoMs(): number {
    return this.lastOkMs === 0 ? Number.MAX_SAFE_INTEGER : Math.max(0, this.now() - this.lastOkMs);
  }

  /**
   * Keeps the containers alive past the limit (a clean stop while the manager itself is gone: the
   * whole cluster is stopping, nothing can take over until agents are back).
   */
  async suspend(forMs: number): Promise<void> {
    this.stop();
    await this.stamp(this.now() + forMs);
  }

  /** Stops the ticks (the stamp stays). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.fenced || this.asking) return;
    const age = this.now() - this.stampMs;
    if (this.due()) {
      this.fenced = true;
      this.o.log(`fence: no contact with the manager for ${Math.round(age / 1000)} s and peers confirm it is up (or none is reachable): this host fenced itself; its containers are killed`);
      this.o.onFenced();
      return;
    }
    if (age < this.afterMs - ASK_AHEAD_MS) return;
    this.asking = true;
    try {
      const asked = this.now();
      const verdict = await this.askPeers();
      if (verdict !== this.lastVerdict) this.o.log(`fence: heartbeats failing; ${verdict}`);
      this.lastVerdict = verdict;
      if (verdict.startsWith('keep')) await this.stamp(asked);
    } finally {
      this.asking = false;
    }
  }

  /** Asks every peer; the verdict starts with "keep" when the containers should live on. */
  private async askPeers(): Promise<string> {
    const peers = this.peers;
    if (peers.length === 0) return 'keep: no other node could take over';
    const answers = await Promise.allSettled(peers.map((p) => this.o.askPeer(p)));
    const reached = answers.filter((a): a is PromiseFulfilledResult<PeerContact> => a.status === 'fulfilled').map((a) => a.value);
    if (reached.length === 0) return `fence: none of ${peers.length} peer(s) reachable (this host is cut off)`;
    if (reached.some((r) => r.managerOkAgoMs < PEER_FRESH_MS)) return 'fence: peers still reach the manager (this host is cut off)';
    return `keep: ${reached.length} peer(s) reachable and none reaches the manager (the manager is down, not this host)`;
  }

  private async stamp(atMs: number): Promise<void> {
    if (atMs < this.stampMs) return;
    this.stampMs = atMs;
    const t = atMs / 1000;
    try {
      await utimes(this.o.file, t, t);
    } catch {
      await (await open(this.o.file, 'a')).close();
      await utimes(this.o.file, t, t);
    }
  }
}
