/** Typed clients of Ferry's HTTP APIs: the manager's (`FerryClient`) and an agent's (`AgentClient`). */
export { FerryClient } from './ferry.ts';
export type { NodeView, CreateContainerInput, ContainerPatch, WaitOptions, LogLine, WatchFrame, NodeRegistration, NodeRegistered } from './ferry.ts';
export { AgentClient } from './agent.ts';
export type { FreezeResult } from './agent.ts';
export { send, requestJson, ndjson, decodeError, buildUrl, LEADER_HEADER } from './http.ts';
export type { Endpoint, RequestOptions, ExecFrame } from './http.ts';
