/** The lb's error table: bad routes, pool limits, and HAProxy's own failures with its words attached. */
import { defineErrors } from '../errors/index.ts';

/** Lb errors. */
export const lbErrors = defineErrors({
  HAPROXY_MISSING: { status: 503, message: 'haproxy not found ({binary}); install it (apt-get install -y haproxy)' },
  CONFIG_CHECK_FAILED: { status: 500, message: 'haproxy -c rejected the generated configuration: {output}' },
  HAPROXY_START_FAILED: { status: 500, message: 'haproxy did not start: {reason}' },
  HAPROXY_RELOAD_FAILED: { status: 500, message: 'haproxy reload did not bring up a new worker: {reason}' },
  HAPROXY_NOT_RUNNING: { status: 409, message: 'the lb is not running' },
  RUNTIME_COMMAND_FAILED: { status: 502, message: 'haproxy refused "{command}": {answer}' },
  POOL_EXHAUSTED: { status: 503, message: 'no free {what} in pool group {group} (has {have}, needs {need}) and reloads are off' },
  PORT_OUT_OF_RANGE: { status: 400, message: 'service "{service}": TCP port {port} is outside the entry point range {range}' },
  HOST_CLASH: { status: 409, message: 'services "{service}" and "{other}" both claim {route}' },
  TCP_PORT_CLASH: { status: 409, message: 'services "{service}" and "{other}" both claim TCP port {port}' },
  BAD_ROUTE: { status: 400, message: 'service "{service}": {reason}' },
  BAD_OPTIONS: { status: 400, message: 'lb options: {reason}' },
  SERVICE_NOT_FOUND: { status: 404, message: 'no service "{service}" at the entry point' },
  SERVER_NOT_FOUND: { status: 404, message: 'service "{service}" has no server "{server}"' },
});
