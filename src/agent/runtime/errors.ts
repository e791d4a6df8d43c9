/** Error table of the container runtime (runc + ferry-shim). */
import { defineErrors } from '../../errors/index.ts';

/** Runtime errors; codes are `FERRY_ERR_RUNTIME_*`. */
export const runtimeErrors = defineErrors({
  RUNTIME_CREATE_FAILED: { status: 500, message: 'creating container {id} failed: {reason}' },
  RUNTIME_NOT_FOUND: { status: 404, message: 'container {id} is not known to the runtime' },
  RUNTIME_NOT_RUNNING: { status: 409, message: 'container {id} is not running (status {status})' },
  RUNTIME_EXEC_FAILED: { status: 500, message: 'exec in container {id} failed: {reason}' },
  RUNTIME_UPDATE_FAILED: { status: 500, message: 'updating the limits of container {id} failed: {reason}' },
  RUNTIME_SHIM_FAILED: { status: 500, message: 'the supervisor of container {id} failed: {reason}' },
  RUNTIME_INVALID_ID: { status: 400, message: 'invalid container id {id}: use 1-128 of [A-Za-z0-9_.+-], starting with a letter or digit' },
  RUNTIME_COMMAND_FAILED: { status: 500, message: 'runc {command} on container {id} failed: {reason}' },
});
