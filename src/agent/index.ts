/** The agent: runs a node's containers with runc, reconciling the assignments the manager hands it. */
export { startAgent, ID_MAP } from './daemon.ts';
export type { AgentOptions, RunningAgent } from './daemon.ts';
export { agentErrors } from './errors.ts';
