/**
 * The node network's error table: every failure this component reports has a stable code here.
 */
import { defineErrors } from '../../errors/index.ts';

/** Error factories of the node network (`FERRY_ERR_NET_*`). */
export const netErrors = defineErrors({
  /** `by` is " by container X" when the holder is known, " by another process" when the OS refused. */
  NET_PORT_IN_USE: { status: 409, message: 'host port {hostIp}:{hostPort} is already in use{by}' },
  NET_POOL_EXHAUSTED: { status: 503, message: 'no free address left in {subnet}: all {size} are leased' },
  NET_BAD_PORT: { status: 400, message: 'bad port mapping "{spec}": {reason}' },
  NET_SETUP_FAILED: { status: 500, message: 'network setup failed: {command}: {stderr}' },
  NET_BAD_CONFIG: { status: 400, message: 'bad network configuration: {reason}' },
  NET_STATE_INVALID: { status: 500, message: 'network state file {file} is unreadable: {reason}' },
});
