/**
 * Overlay markers in an unpacked layer: whiteouts (char device 0:0) and opaque directories
 * (`trusted.overlay.opaque=y`). Node has neither mknod nor setxattr, so one python3 process per layer
 * does them all (python3 is in scripts/setup's package list); it re-checks that no parent is a symlink.
 */
import { spawn } from 'node:child_process';

const SCRIPT = String.raw`
import json, os, stat, sys
req = json.load(sys.stdin)
root = req["root"]
def checked(rel):
    p = os.path.join(root, rel) if rel else root
    parent = os.path.dirname(p) if rel else os.path.dirname(root)
    if os.path.realpath(parent) != parent:
        raise SystemExit("refusing %r: a parent is a symlink" % rel)
    return p
for rel in req["whiteouts"]:
    p = checked(rel)
    os.mknod(p, stat.S_IFCHR | 0, os.makedev(0, 0))
    os.lchown(p, req["uid"], req["gid"])
for rel in req["opaque"]:
    p = checked(rel)
    if os.path.islink(p) or not os.path.isdir(p):
        raise SystemExit("refusing %r: not a directory" % rel)
    os.setxattr(p, "trusted.overlay.opaque", b"y", follow_symlinks=False)
`;

/** Writes whiteout devices and opaque xattrs under `root` (a real path); resolves false (and logs) when it cannot. */
export async function writeOverlayMarkers(
  root: string,
  whiteouts: string[],
  opaque: string[],
  owner: { uid: number; gid: number },
  log: (msg: string) => void,
): Promise<boolean> {
  if (whiteouts.length === 0 && opaque.length === 0) return true;
  return new Promise((resolve) => {
    const child = spawn('python3', ['-c', SCRIPT], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4000) stderr += d.toString();
    });
    child.on('error', (e) => {
      log(`images: cannot run python3 for overlay whiteouts (${e.message}); layers will be copied instead of overlaid`);
      resolve(false);
    });
    child.on('close', (code) => {
      if (code === 0) return resolve(true);
      log(`images: writing overlay whiteouts in ${root} failed (exit ${code}): ${stderr.trim()}; layers will be copied instead of overlaid`);
      resolve(false);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify({ root, whiteouts, opaque, uid: owner.uid, gid: owner.gid }));
  });
}
