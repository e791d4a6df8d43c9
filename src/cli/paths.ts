/** Where Ferry's own files are: the repository (native helpers) and a home's state, logs and pid files. */
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';

/** The repository root (this file is src/cli/paths.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Paths of the helpers scripts/setup builds and installs. */
export const TOOLS = {
  shim: process.env.FERRY_SHIM ?? join(REPO_ROOT, 'build/ferry-shim'),
  exec: process.env.FERRY_EXEC ?? join(REPO_ROOT, 'build/ferry-exec'),
  sampleApp: process.env.FERRY_SAMPLE_APP ?? join(REPO_ROOT, 'build/sample-app'),
  runc: process.env.FERRY_RUNC ?? 'runc',
  criu: process.env.FERRY_CRIU ?? '/opt/ferry/bin/criu',
  main: join(REPO_ROOT, 'src/cli/main.ts'),
  tsx: join(REPO_ROOT, 'node_modules/tsx/dist/loader.mjs'),
};

/** The layout of a Ferry home. */
export function homePaths(home: string): {
  manager: string; agents: string; logs: string; run: string; managerRun: string; managerRunOf: (n: string) => string; agentRun: (n: string) => string; lbRun: (n: string) => string;
  simulation: string; sharedVolumes: string; etcd: string;
} {
  return {
    manager: join(home, 'manager'),
    agents: join(home, 'agents'),
    logs: join(home, 'logs'),
    run: join(home, 'run'),
    managerRun: join(home, 'run/manager.json'),
    /** The run file of manager `n` among several (`ferry manager --name n`, e.g. `ferry up --managers 3`). */
    managerRunOf: (n: string) => join(home, `run/manager-${n}.json`),
    agentRun: (n: string) => join(home, `run/agent-${n}.json`),
    lbRun: (n: string) => join(home, `run/lb-${n}.json`),
    /** The simulated hosts of `ferry up --nodes N` (see simulation.ts); not a daemon's run file. */
    simulation: join(home, 'run/sim.json'),
    /** Shared volumes of the agents `ferry up` starts (simulated hosts share this machine's filesystem). */
    sharedVolumes: join(home, 'shared-volumes'),
    /** The etcd members' data and layout of `ferry up --managers 3` (see etcd.ts). */
    etcd: join(home, 'etcd'),
  };
}
