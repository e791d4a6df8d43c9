/** Client of an agent's API: what the manager calls on a node (logs, exec, stats, images). */
import type { Assignment, ImageRecord } from '../model/index.ts';
import type { Endpoint, ExecFrame } from './http.ts';
import { ndjson, requestJson, send } from './http.ts';
import type { LogLine } from './ferry.ts';

/** What a freeze made: the archive's size, how long the dump took, and per strategy what else the manager needs. */
export interface FreezeResult {
  readonly bytes: number;
  readonly dumpMs: number;
  /** Post-copy: where the source's CRIU serves the pages. */
  readonly pageServer?: string;
  /** Pre-copy: the final delta's pages, and whether the write tracker found them (else every page was compared). */
  /**
   * After pre-copy rounds: the final delta. `unchangedLeftOut` (tracked only): CRIU's dump left the
   * pages the tracker vouched for out (clean-pages shim) instead of pinning every page.
   */
  readonly finalDelta?: { readonly pagesSent: number; readonly pagesTotal: number; readonly tracked: boolean; readonly unchangedLeftOut?: boolean };
}

/** Client of one agent. */
export class AgentClient {
  /** Where the agent is. */
  readonly endpoint: Endpoint;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  /** How long ago this agent last reached the manager (the fence's peer check). */
  async contact(signal?: AbortSignal): Promise<{ managerOkAgoMs: number }> {
    return requestJson(this.endpoint, 'GET', 'v1/contact', { signal });
  }

  /** The container's log lines. */
  async logs(id: string, o: { follow?: boolean; tail?: number; signal?: AbortSignal } = {}): Promise<Response> {
    return send(this.endpoint, 'GET', `v1/containers/${encodeURIComponent(id)}/logs`, { query: { follow: o.follow ? 'true' : undefined, tail: o.tail }, signal: o.signal });
  }

  /** Parsed log lines (for callers that do not just pass the stream on). */
  async logLines(id: string, o: { follow?: boolean; tail?: number; signal?: AbortSignal } = {}): Promise<AsyncGenerator<LogLine>> {
    return ndjson<LogLine>(await this.logs(id, o));
  }

  /** Runs a process in the container; the response is an NDJSON stream of ExecFrames. */
  async exec(id: string, body: { args: string[]; env?: string[]; cwd?: string; stdin?: string }, signal?: AbortSignal): Promise<Response> {
    return send(this.endpoint, 'POST', `v1/containers/${encodeURIComponent(id)}/exec`, { body, signal });
  }

  /** Parsed exec frames. */
  async execFrames(id: string, body: { args: string[]; env?: string[]; cwd?: string; stdin?: string }, signal?: AbortSignal): Promise<AsyncGenerator<ExecFrame>> {
    return ndjson<ExecFrame>(await this.exec(id, body, signal));
  }

  /** cgroup stats of the container. */
  stats(id: string): Promise<Record<string, unknown>> {
    return requestJson(this.endpoint, 'GET', `v1/containers/${encodeURIComponent(id)}/stats`);
  }

  /** Imports an image archive into the node's store. */
  importImage(archive: AsyncIterable<Uint8Array> | Uint8Array, name?: string, signal?: AbortSignal): Promise<ImageRecord> {
    return requestJson(this.endpoint, 'POST', 'v1/images/import', { rawBody: archive, query: { name }, signal });
  }

  /** Removes an image (tag or id) from the node's store. */
  removeImage(ref: string, force = false): Promise<void> {
    return requestJson(this.endpoint, 'DELETE', `v1/images/${encodeURIComponent(ref)}`, { query: { force: force ? 'true' : undefined } });
  }

  /** Migration, source: freeze and dump `name`, leaving it frozen. */
  migrateFreeze(id: string, name: string, o: { postCopy?: boolean; streamTo?: string; preCopyRound?: number; volumes?: string[] } = {}): Promise<FreezeResult> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/freeze`, { body: { name, ...o } });
  }

  /**
   * Migration, source, pre-copy: take round `round` while the container runs; returns what changed.
   * `tracked`: read from its running memory as the write tracker directed (no pause), else a dump.
   */
  migrateRound(id: string, name: string, round: number): Promise<{ sentBytes: number; dumpMs: number; pagesChanged?: number; tracked?: boolean }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/round`, { body: { name, round } });
  }

  /** Migration, target, pre-copy: fetch round `round` from `source`; `expectBytes`: the container's memory, where known. */
  migrateFetchRound(id: string, source: string, round: number, bytesPerSec?: number, expectBytes?: number): Promise<{ bytes: number; ms: number }> {
    const o = { ...(bytesPerSec ? { bytesPerSec } : {}), ...(expectBytes !== undefined ? { expectBytes: Math.ceil(expectBytes) } : {}) };
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/fetch-round`, { body: { source, round, ...o } });
  }

  /** Migration, target: bytes received so far. */
  migrateReceived(id: string): Promise<{ bytes: number }> {
    return requestJson(this.endpoint, 'GET', `v1/migrate/${id}/received`);
  }

  /** Migration, source (`--strategy auto`): how fast container `name` writes its memory, over `windowMs`; `why` when it cannot tell. */
  migrateMeasureWrites(id: string, name: string, windowMs: number): Promise<{ bytesPerSec?: number; pages?: number; ms?: number; why?: string }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/measure-writes`, { body: { name, windowMs } });
  }

  /** Migration, source (`--strategy auto`): lays `bytes` random bytes for the target's link probe. */
  migrateLayProbe(id: string, bytes: number): Promise<{ bytes: number }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/probe`, { body: { bytes } });
  }

  /** Migration, target (`--strategy auto`): fetches the source's probe; the link's speed. */
  migrateMeasureLink(id: string, source: string): Promise<{ bytes: number; ms: number; bytesPerSec: number }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/measure-link`, { body: { source } });
  }

  /** Migration, target, before the freeze: a CRIU page server for the dump's pages; its host:port. `expectBytes`: the container's memory, where known. */
  migratePrepare(id: string, expectBytes?: number): Promise<{ pageServer: string }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/prepare`, { body: expectBytes !== undefined ? { expectBytes: Math.ceil(expectBytes) } : {} });
  }

  /** Migration, source, while it runs: pack `name`'s host-local volumes whole for the target. */
  migratePackVolumes(id: string, name: string, volumes: string[]): Promise<{ bytes: number }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/pack-volumes`, { body: { name, volumes } });
  }

  /** Migration, target, before the freeze: fetch the packed volumes from `source` and stage them. */
  migrateFetchVolumes(id: string, source: string, volumes: string[], bytesPerSec?: number): Promise<{ bytes: number }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/fetch-volumes`, { body: { source, volumes, ...(bytesPerSec ? { bytesPerSec } : {}) } });
  }

  /** Migration, source rollback: thaw `name` and publish its ports again. */
  migrateResume(id: string, name: string, ports: Assignment['spec']['ports']): Promise<void> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/resume`, { body: { name, ports } });
  }

  /** Migration, target, pre-copy, before the freeze: fetch the final delta from `source` as soon as it exists. */
  migratePrefetch(id: string, source: string, round: number, bytesPerSec?: number): Promise<void> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/prefetch`, { body: { source, round, ...(bytesPerSec ? { bytesPerSec } : {}) } });
  }

  /** Migration, target: fetch from `source` (an agent URL) and restore. */
  migrateRestore(id: string, source: string, assignment: Assignment, o: { pageServer?: string; bytesPerSec?: number; preCopyRound?: number; expectBytes?: number; volumes?: string[] } = {}): Promise<{ runtimeId: string; pid: number; bytes: number; restoreMs: number }> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/restore`, { body: { source, assignment, ...o } });
  }

  /** Migration, target, after the switch: let the restored processes run. */
  migrateContinue(id: string, name: string): Promise<void> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/continue`, { body: { name } });
  }

  /** Migration, target rollback: remove the incoming copy. */
  migrateAbort(id: string, name: string): Promise<void> {
    return requestJson(this.endpoint, 'POST', `v1/migrate/${id}/abort`, { body: { name } });
  }

  /** Migration: remove its files on this node; `done: false` while a post-copy transfer still runs. */
  migrateCleanup(id: string): Promise<{ done: boolean; error?: string }> {
    return requestJson(this.endpoint, 'DELETE', `v1/migrate/${id}`);
  }

  /** Checks the agent is up. */
  health(): Promise<{ ok: boolean; node: string }> {
    return requestJson(this.endpoint, 'GET', 'healthz');
  }
}
