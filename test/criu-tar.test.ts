/**
 * native/criu/tar.c — the shim that saves and restores a container's tmpfs content inside CRIU's own
 * child instead of running tar, sh and gzip — against GNU tar, as root, on a real tmpfs. build/ferry-tar
 * is the same code as a program: it takes the argument list CRIU gives tar. What one writes the other
 * must read back to the same tree (type, mode with set-id and sticky bits, owner, size, whole-second
 * modification time, link target, content); whatever it does not handle exactly as GNU tar would
 * (hard links, long names, GNU extension headers, input on a pipe, other options) it hands to GNU tar
 * untouched. That CRIU really goes through it is checked with real runc and CRIU in
 * src/agent/runtime/runc.test.ts ("restore from a CRIU image …").
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync,
  readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { skipUnlessReady } from './support/prereq.ts';

const FERRY_TAR = fileURLToPath(new URL('../build/ferry-tar', import.meta.url));
const CREATE = ['--create', '--gzip', '--no-unquote', '--no-wildcards', '--one-file-system', '--check-links',
  '--preserve-permissions', '--sparse', '--numeric-owner', '--directory'];
const EXTRACT = ['--extract', '--gzip', '--no-unquote', '--no-wildcards', '--directory'];

type Run = { status: number | null; stdout: Buffer; stderr: string };

function run(cmd: string, args: string[], input?: Buffer | number): Run {
  const r = spawnSync(cmd, args, { input: typeof input === 'number' ? undefined : input, stdio: [typeof input === 'number' ? input : 'pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}
/** `ferry-tar tar ARGS` or GNU `tar ARGS`; an extract reads the archive from a file (CRIU gives tar the image file). */
function tar(which: 'ferry' | 'gnu', args: string[], archive?: string): Run {
  const fd = archive === undefined ? undefined : openSync(archive, 'r');
  try {
    return which === 'ferry' ? run(FERRY_TAR, ['tar', ...args], fd) : run('tar', args, fd);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Every entry below `dir` (and `dir` itself as "."): what tar keeps of it, one line each, sorted. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const p = rel === '.' ? dir : join(dir, rel);
    const st = lstatSync(p);
    const type = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : st.isFIFO() ? 'p' : st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : '?';
    const extra = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)
      : st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : st.isCharacterDevice() || st.isBlockDevice() ? `dev ${st.rdev}` : '';
    // A symlink's mode and times are the system's, not the archive's; its owner is kept.
    // (A directory's size is its file system's: the source is a tmpfs, the copies are not.)
    const size = st.isDirectory() ? '' : ` ${st.size}`;
    const meta = st.isSymbolicLink() ? `${st.uid}:${st.gid}` : `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}${size} ${Math.floor(st.mtimeMs / 1000)}`;
    out.push(`${rel} ${type} ${meta} ${extra}`.trim());
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(rel === '.' ? n : `${rel}/${n}`);
  };
  walk('.');
  return out.sort();
}

describe('the tmpfs archiver preloaded into CRIU (native/criu/tar.c) against GNU tar', { skip: skipUnlessReady([FERRY_TAR, 'tar', 'mount']) }, () => {
  let base: string;
  let src: string;
  let n = 0;
  const fresh = (): string => { const d = join(base, `out-${n++}`); mkdirSync(d); return d; };

  before(() => {
    base = mkdtempSync('/tmp/ferry-tartest-');
    src = join(base, 'src');
    mkdirSync(src);
    // A real tmpfs, as CRIU archives (its own device: --one-file-system holds).
    const m = run('mount', ['-t', 'tmpfs', '-o', 'mode=1777', 'ferry-tartest', src]);
    assert.equal(m.status, 0, m.stderr);
    mkdirSync(join(src, 'a/b'), { recursive: true });
    writeFileSync(join(src, 'a/f'), 'hello\n');
    chmodSync(join(src, 'a/f'), 0o4755);
    writeFileSync(join(src, 'a/b/big'), randomBytes(300_000)); // more than 64 KiB: zlib's usual window
    chownSync(join(src, 'a/b/big'), 1000, 2000);
    writeFileSync(join(src, 'empty'), '');
    chmodSync(join(src, 'empty'), 0o600);
    writeFileSync(join(src, 'odd'), Buffer.alloc(513, 7)); // one byte past a block
    symlinkSync('a/f', join(src, 'link'));
    assert.equal(run('mkfifo', [join(src, 'fifo')]).status, 0);
    assert.equal(run('mknod', [join(src, 'null'), 'c', '1', '3']).status, 0);
    chmodSync(join(src, 'a'), 0o1777);
    chmodSync(join(src, 'a/b'), 0o2750);
    utimesSync(join(src, 'a/b'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    writeFileSync(join(src, 'a/b/late'), 'x'); // then the directory's time moves: it is set after its content
    utimesSync(join(src, 'a/b'), new Date('2021-02-03T04:05:06Z'), new Date('2021-02-03T04:05:06Z'));
  });

  after(() => {
    if (!base) return;
    run('umount', [src]);
    rmSync(base, { recursive: true, force: true });
  });

  it('what it archives GNU tar extracts to the same tree, and the reverse; it reads its own', () => {
    const mine = join(base, 'mine.tgz');
    const c = tar('ferry', [...CREATE, src, '.']);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /ferry-criu-tar: archived 11 entries of \S+ in [\d.]+ ms/);
    writeFileSync(mine, c.stdout);
    const gnuOut = fresh();
    const x = tar('gnu', [...EXTRACT, gnuOut], mine);
    assert.equal(x.status, 0, x.stderr);
    assert.deepEqual(listing(gnuOut), listing(src), 'GNU tar reads back what ferry-tar archived');

    const theirs = join(base, 'theirs.tgz');
    const g = tar('gnu', [...CREATE, src, '.']);
    assert.equal(g.status, 0, g.stderr);
    writeFileSync(theirs, g.stdout);
    const ferryOut = fresh();
    const y = tar('ferry', [...EXTRACT, ferryOut], theirs);
    assert.equal(y.status, 0, y.stderr);
    assert.match(y.stderr, /ferry-criu-tar: extracted 11 entries/);
    assert.doesNotMatch(y.stderr, /handing over/);
    assert.deepEqual(listing(ferryOut), listing(src), 'ferry-tar reads back what GNU tar archived');

    const own = fresh();
    const z = tar('ferry', [...EXTRACT, own], mine);
    assert.equal(z.status, 0, z.stderr);
    assert.deepEqual(listing(own), listing(src));
  });

  it('a file in the way of an entry is replaced; a directory already there is kept and takes the archive\'s mode', () => {
    const archive = join(base, 'way.tgz');
    writeFileSync(archive, tar('ferry', [...CREATE, src, '.']).stdout);
    const out = fresh();
    mkdirSync(join(out, 'a'));
    chmodSync(join(out, 'a'), 0o700);
    writeFileSync(join(out, 'empty'), 'stale content');
    symlinkSync('/nowhere', join(out, 'odd'));
    const x = tar('ferry', [...EXTRACT, out], archive);
    assert.equal(x.status, 0, x.stderr);
    assert.deepEqual(listing(out), listing(src));
  });

  it('hands to GNU tar what it does not write itself: hard links, long names', () => {
    for (const [what, make, undo] of [
      ['a hard link', () => linkSync(join(src, 'a/f'), join(src, 'hard')), () => rmSync(join(src, 'hard'))],
      ['a name longer than 100 bytes', () => writeFileSync(join(src, 'n'.repeat(120)), 'long'), () => rmSync(join(src, 'n'.repeat(120)))],
    ] as const) {
      make();
      try {
        const c = tar('ferry', [...CREATE, src, '.']);
        assert.equal(c.status, 0, c.stderr);
        assert.match(c.stderr, new RegExp(`handing over to tar: ${what}`));
        const archive = join(base, 'fallback.tgz');
        writeFileSync(archive, c.stdout);
        // GNU tar wrote it: its own extract and ours (which hands a GNU long-name or link header back) agree.
        const viaGnu = fresh();
        assert.equal(tar('gnu', [...EXTRACT, viaGnu], archive).status, 0);
        assert.deepEqual(listing(viaGnu), listing(src));
        const viaFerry = fresh();
        const x = tar('ferry', [...EXTRACT, viaFerry], archive);
        assert.equal(x.status, 0, x.stderr);
        assert.match(x.stderr, /handing over to tar: (a hard link, pax or GNU extension header|GNU header fields in use)/);
        assert.deepEqual(listing(viaFerry), listing(src));
        if (what === 'a hard link') assert.equal(lstatSync(join(viaFerry, 'hard')).ino, lstatSync(join(viaFerry, 'a/f')).ino, 'still one file');
      } finally {
        undo();
      }
    }
  });

  it('an archive on a pipe and any other argument list go to GNU tar as they came', () => {
    const archive = tar('gnu', [...CREATE, src, '.']).stdout;
    const out = fresh();
    const piped = run(FERRY_TAR, ['tar', ...EXTRACT, out], archive); // stdin is a pipe: it cannot be read twice
    assert.equal(piped.status, 0, piped.stderr);
    assert.match(piped.stderr, /handing over to tar: an archive on a pipe/);
    assert.deepEqual(listing(out), listing(src));
    const other = run(FERRY_TAR, ['tar', '--create', '--directory', src, '.']);
    assert.equal(other.status, 0, other.stderr);
    assert.match(other.stderr, /handing over to tar: other options than CRIU's/);
    assert.ok(other.stdout.length >= 10240, 'GNU tar wrote the archive');
  });

  it('a member below one of the archive\'s own symlinks goes to GNU tar, which writes nothing through the link', () => {
    const outside = join(base, 'outside');
    mkdirSync(outside);
    const archive = join(base, 'through-link.tgz');
    const script = [
      'import io, sys, tarfile',
      'with tarfile.open(sys.argv[1], "w:gz", format=tarfile.USTAR_FORMAT) as t:',
      '    d = tarfile.TarInfo("./d"); d.type = tarfile.SYMTYPE; d.linkname = sys.argv[2]; t.addfile(d)',
      '    f = tarfile.TarInfo("./d/x"); f.size = 3; t.addfile(f, io.BytesIO(b"bad"))',
    ].join('\n');
    const made = run('python3', ['-c', script, archive, outside]);
    assert.equal(made.status, 0, made.stderr);
    const gnu = tar('gnu', [...EXTRACT, fresh()], archive);
    const x = tar('ferry', [...EXTRACT, fresh()], archive);
    assert.match(x.stderr, /handing over to tar: a member below a symlink of the archive/);
    assert.equal(x.status, gnu.status, 'the same outcome as GNU tar\'s own');
    assert.deepEqual(readdirSync(outside), [], 'nothing written through the link');
  });

  it('a damaged archive or a missing directory fails with tar\'s status 2 and says why', () => {
    const good = tar('ferry', [...CREATE, src, '.']).stdout;
    const bad = join(base, 'bad.tgz');
    writeFileSync(bad, Buffer.concat([good.subarray(0, 40), Buffer.alloc(200, 0x55)]));
    const x = tar('ferry', [...EXTRACT, fresh()], bad);
    assert.equal(x.status, 2, 'GNU tar, handed the damaged archive, fails too');
    const missing = join(base, 'no-such-dir');
    const y = tar('ferry', [...CREATE, missing, '.']);
    assert.equal(y.status, 2);
    assert.match(y.stderr, new RegExp(`ferry-criu-tar: open ${missing}: No such file or directory`));
  });
});
