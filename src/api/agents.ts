/** Finds the agent that runs a container, for the calls the manager passes through (logs, exec, stats). */
import { AgentClient } from '../client/index.ts';
import type { ContainerView, Node } from '../model/index.ts';
import { keys } from '../model/index.ts';
import type { ApiDeps } from './server.ts';
import { apiErrors } from './errors.ts';
import { getContainer } from './containers.ts';

/** A client for the agent of `node`. */
export async function agentOfNode(deps: ApiDeps, node: string): Promise<AgentClient> {
  const kv = await deps.store.get<Node>(keys.node(node));
  if (!kv) throw apiErrors.NODE_NOT_FOUND({ name: node });
  return new AgentClient({ url: kv.value.status.address, token: deps.agentToken });
}

/** The agent running container `name`, and the container's runtime id there. */
export async function agentFor(deps: ApiDeps, name: string): Promise<{ agent: AgentClient; runtimeId: string; view: ContainerView }> {
  const view = await getContainer(deps.store, name);
  const st = view.status;
  if (!st || !st.runtimeId) throw apiErrors.CONTAINER_NOT_RUNNING({ name, phase: st?.phase ?? 'pending (not yet placed on a node)' });
  return { agent: await agentOfNode(deps, st.node), runtimeId: st.runtimeId, view };
}
