/**
 * The OCI hook that plumbs a container's network namespace. runc creates the namespace itself
 * (inside the container's user namespace, which CRIU needs) and runs this hook at `runc create` and
 * again at `runc restore`, with the container state JSON on stdin; the hook reads the pid and wires
 * a veth into `/proc/PID/ns/net`. The hook is a program (native/nethook/ferry-net-hook.c, built by
 * scripts/setup into build/): it talks rtnetlink itself, as a restore waits for it inside the freeze.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hook } from '../runtime/types.ts';
import { TOOL_PATH } from './command.ts';
import { netErrors } from './errors.ts';

/** File name of the hook inside the network state dir. */
export const HOOK_FILE = 'ferry-net-hook';

/** How the prestart hook leaves the host end: `up` on the bridge (normal start), or `down` and detached
 * (migration target: unreachable until the restore returns, then `bringUp`). */
export type HookMode = 'up' | 'down';

/** Seconds runc waits for the hook before killing it. */
const HOOK_TIMEOUT_S = 10;

/** The host-side veth name of a container: `fv` + 11 hex digits of sha256(id) — 13 chars, under IFNAMSIZ. */
export function vethName(containerId: string): string {
  return `fv${createHash('sha256').update(containerId).digest('hex').slice(0, 11)}`;
}

/** Everything the prestart hook needs to plumb one container. */
export interface HookParams {
  readonly mode: HookMode;
  /** `ip/prefix`, e.g. `10.213.0.2/24`. */
  readonly address: string;
  readonly gateway: string;
  readonly gatewayMac: string;
  readonly mac: string;
  readonly veth: string;
  readonly bridge: string;
  /** MTU of both ends (the overlay's, smaller than the underlay's); default the kernel's 1500. */
  readonly mtu?: number;
}

/** The prestart hook entry for a bundle; `args[0]` is the path, as OCI's execv semantics want. */
export function prestartHook(hookPath: string, p: HookParams): Hook {
  return {
    path: hookPath,
    args: [hookPath, `mode=${p.mode}`, `addr=${p.address}`, `gateway=${p.gateway}`, `gateway-mac=${p.gatewayMac}`, `mac=${p.mac}`, `veth=${p.veth}`, `bridge=${p.bridge}`, ...(p.mtu ? [`mtu=${p.mtu}`] : [])],
    env: [`PATH=${TOOL_PATH}`],
    timeout: HOOK_TIMEOUT_S,
  };
}

/** The poststop hook entry: removes the host veth if it outlived the namespace. */
export function poststopHook(hookPath: string, veth: string): Hook {
  return { path: hookPath, args: [hookPath, 'mode=remove', `veth=${veth}`], env: [`PATH=${TOOL_PATH}`], timeout: HOOK_TIMEOUT_S };
}

/** The hook program scripts/setup builds (FERRY_NET_HOOK names another). */
export const HOOK_PROGRAM = process.env.FERRY_NET_HOOK ?? fileURLToPath(new URL('../../../build/ferry-net-hook', import.meta.url));

/**
 * Copies the hook program into `dir` (atomically, only when its content changed) and returns its
 * absolute path. Bundles name the copy, so rebuilding the program never swaps a hook under a running start.
 */
export async function installHook(dir: string): Promise<string> {
  const path = join(dir, HOOK_FILE);
  const program = HOOK_PROGRAM;
  const bytes = await readFile(program).catch((e: NodeJS.ErrnoException) => {
    throw netErrors.NET_BAD_CONFIG({ reason: `the network hook ${program} cannot be read (${e.code ?? e.message}); scripts/setup builds it` });
  });
  const current = await readFile(path).catch(() => undefined);
  if (current?.equals(bytes)) return path;
  await mkdir(dir, { recursive: true });
  // A hook running right now keeps reading the old inode; a half-written file is never visible.
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, bytes, { mode: 0o755 });
  await chmod(tmp, 0o755);
  await rename(tmp, path);
  return path;
}
