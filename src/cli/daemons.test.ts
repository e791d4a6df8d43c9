import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { daemonExited } from './daemons.ts';

describe('daemonExited', () => {
  it('a live daemon of the role has not exited; once it is gone it has; another role is not it', async () => {
    // Looks like `ferry lb` to isOurProcess: an argument ending in src/cli/main.ts and the role.
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'src/cli/main.ts', 'lb'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      // Right after spawn the child may still be inside execve (an empty cmdline): it must not count as gone.
      assert.equal(await daemonExited(child.pid!, 'lb'), false);
      assert.equal(await daemonExited(child.pid!, 'agent'), true, 'alive, but not a daemon of that role');
    } finally {
      child.kill('SIGKILL');
    }
    await once(child, 'exit');
    assert.equal(await daemonExited(child.pid!, 'lb'), true);
  });
});
