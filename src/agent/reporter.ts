/**
 * Sends container status to the manager. Latest report per container wins; a report that fails
 * (manager restarting) stays queued and is retried, so the manager converges once it is back.
 */
import type { ContainerStatus } from '../model/index.ts';
import type { FerryClient } from '../client/index.ts';

type Pending = { kind: 'put'; status: ContainerStatus } | { kind: 'clear'; uid: string };

/** Queues and delivers status reports. */
export class StatusReporter {
  private readonly client: FerryClient;
  private readonly log: (m: string) => void;
  private readonly pending = new Map<string, Pending>();
  private readonly last = new Map<string, string>();
  private flushing = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private waiters: (() => void)[] = [];

  private readonly node: string;

  constructor(client: FerryClient, node: string, log: (m: string) => void) {
    this.client = client;
    this.node = node;
    this.log = log;
  }

  /** Queues a status (dropped when identical to the last one delivered, ignoring updatedAt). */
  report(s: ContainerStatus): void {
    const sig = JSON.stringify({ ...s, updatedAt: '' });
    if (this.last.get(s.name) === sig && !this.pending.has(s.name)) return;
    this.pending.set(s.name, { kind: 'put', status: s });
    this.kick();
  }

  /** Queues the removal of a container's status. */
  clear(name: string, uid: string): void {
    this.pending.set(name, { kind: 'clear', uid });
    this.kick();
  }

  /** Forgets what was delivered so the next reports are sent again (after a manager restart). */
  resend(): void {
    this.last.clear();
  }

  /** Resolves when nothing is pending (tests, shutdown). */
  settled(): Promise<void> {
    if (this.pending.size === 0 && !this.flushing) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /** Stops retrying. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private kick(): void {
    if (!this.flushing && !this.closed) void this.flush();
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.pending.size > 0 && !this.closed) {
      const [name, p] = this.pending.entries().next().value as [string, Pending];
      this.pending.delete(name);
      try {
        if (p.kind === 'put') {
          await this.client.agent.reportStatus(p.status);
          this.last.set(name, JSON.stringify({ ...p.status, updatedAt: '' }));
        } else {
          await this.client.agent.clearStatus(name, p.uid, this.node);
          this.last.delete(name);
        }
      } catch (e) {
        if (!this.pending.has(name)) this.pending.set(name, p);
        this.log(`status report for ${name} failed (will retry): ${(e as Error).message}`);
        this.flushing = false;
        this.timer = setTimeout(() => this.kick(), 1000);
        this.timer.unref();
        return;
      }
    }
    this.flushing = false;
    for (const w of this.waiters.splice(0)) w();
  }
}
