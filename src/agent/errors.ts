/** The agent's own error table (the runtime, images and network keep theirs). */
import { defineErrors } from '../errors/index.ts';

/** Agent errors. */
export const agentErrors = defineErrors({
  CONTAINER_NOT_FOUND: { status: 404, message: 'no container "{id}" on this node' },
  NO_COMMAND: { status: 400, message: 'image "{image}" has no entrypoint or cmd; give a command' },
  BAD_USER: { status: 400, message: 'cannot resolve user "{user}" in the image: {reason}' },
  BAD_VOLUME: { status: 400, message: 'cannot mount volume {source}: {reason}' },
  NO_SHARED_VOLUMES: { status: 400, message: 'volume "{volume}" is shared, but this node has no shared volume root; start its agent with --shared-volumes DIR (a directory every host mounts)' },
  VOLUME_FENCED: { status: 409, message: 'volume "{volume}" is fenced against this copy: it was placed at epoch {epoch}, but epoch {newer} (on {node}, since {at}) has taken the volume; this copy must not run' },
  MANAGER_UNREACHABLE: { status: 503, message: 'cannot reach the manager at {url}: {reason}' },
  BAD_DATA_DIR: { status: 400, message: '{dir} is not searchable by other users (mode o-x); containers run as host uid 100000 and must reach their rootfs: chmod o+x {dir} or choose another data directory' },
  BAD_REQUEST: { status: 400, message: 'bad request: {reason}' },
});
