import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRIU_CACHE_FILE, CRIU_CLEAN_CACHE_FILE, CRIU_RUN_DIR, cleanPagesSupported, primeCriuCache } from './criu-cache.ts';
import { isTmpfs } from './migrate.ts';
import { zeroPfn as ferryZeroPfn } from './dirty-track.ts';

const CRIU = process.env.FERRY_CRIU ?? '/opt/ferry/bin/criu';

/** What `criu check` says about the cache in its log (-v4). */
function checkLog(dir: string): string {
  const log = join(dir, 'check.log');
  const r = spawnSync(CRIU, ['check', '-v4', '-o', log], { encoding: 'utf8' });
  assert.equal(r.status, 0, `criu check failed: ${r.stdout}${r.stderr}`);
  return readFileSync(log, 'utf8');
}

/**
 * Whether a real-CRIU test may run here: a missing prerequisite (root unless `root: false`, CRIU at
 * CRIU) fails it under CI and skips it elsewhere; `shims` also skips it when a system CRIU is in use
 * (no private root, so none of Ferry's shims).
 */
function realCriu(t: TestContext, what: string, o: { root?: boolean; shims?: boolean } = {}): boolean {
  const missing = o.root !== false && process.getuid?.() !== 0 ? 'needs root' : !existsSync(CRIU) ? `needs CRIU at ${CRIU} (scripts/setup)` : undefined;
  if (missing) {
    if (process.env.CI === 'true') assert.fail(`${what} cannot run: ${missing}`);
    t.skip(missing);
    return false;
  }
  if (o.shims && !readFileSync(CRIU, 'utf8').includes('/criu-root/')) {
    t.skip('a system CRIU is in use (no private root, no shim)');
    return false;
  }
  return true;
}

test('primeCriuCache: on a tmpfs run dir there is nothing to do (CRIU keeps the file itself)', async () => {
  if (!isTmpfs('/dev/shm')) return assert.fail('/dev/shm is not a tmpfs on this machine');
  const dir = mkdtempSync('/dev/shm/ferry-kdat-test-');
  try {
    assert.deepEqual(await primeCriuCache('/no/such/criu', { runDir: dir }), { status: 'criu-writes-it' });
    assert.deepEqual(readdirSync(dir), [], 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('primeCriuCache: a CRIU that cannot run leaves a reason, not an exception, and no file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-kdat-test-'));
  try {
    if (isTmpfs(dir)) return; // /tmp on tmpfs: the case above
    const r = await primeCriuCache('/no/such/criu', { runDir: dir });
    assert.equal(r.status, 'failed');
    assert.deepEqual(readdirSync(dir), [], 'no file, no temporary left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('real CRIU: after primeCriuCache, CRIU loads its kernel facts from /run instead of probing', async (t) => {
  if (!realCriu(t, 'CRIU cache test')) return;
  const dir = mkdtempSync(join(tmpdir(), 'ferry-kdat-test-'));
  try {
    const r = await primeCriuCache(CRIU);
    if (isTmpfs(CRIU_RUN_DIR)) {
      assert.deepEqual(r, { status: 'criu-writes-it' });
      checkLog(dir); // CRIU writes the file on its first run
    } else {
      assert.equal(r.status, 'written', JSON.stringify(r));
      const st = statSync(CRIU_CACHE_FILE);
      assert.equal(st.mode & 0o777, 0o600, 'root-only, as CRIU makes it');
      assert.equal(st.size, (r as { bytes: number }).bytes);
      assert.deepEqual(readdirSync(CRIU_RUN_DIR).filter((n) => n.startsWith('.criu.kdat.ferry-')), [], 'no temporary left');
      assert.ok(!existsSync(`${CRIU_CACHE_FILE}.tmp`), 'nor the empty one a probing CRIU leaves');
    }
    const log = checkLog(dir);
    assert.match(log, /Loaded kdat cache from \/run\/criu\.kdat/);
    assert.doesNotMatch(log, /Stale/);
    // The private tmpfs stayed private: the host's /run is what it was.
    assert.equal(isTmpfs(CRIU_RUN_DIR), readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === CRIU_RUN_DIR && l.split(' ')[2] === 'tmpfs'));
    assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes('ferry-criu-kdat'), 'no mount left on the host');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('real CRIU: with the clean-pages switch CRIU keeps a cache of its own, which says "dirty tracking"', async (t) => {
  if (!realCriu(t, 'CRIU cache test', { shims: true })) return;
  const dir = mkdtempSync(join(tmpdir(), 'ferry-kdat-test-'));
  try {
    const r = await primeCriuCache(CRIU, { cleanPages: true });
    assert.equal(await cleanPagesSupported(CRIU), true);
    if (!isTmpfs(CRIU_RUN_DIR)) {
      assert.equal(r.status, 'written', JSON.stringify(r));
      assert.equal(statSync(CRIU_CLEAN_CACHE_FILE).size, (r as { bytes: number }).bytes);
    }
    await primeCriuCache(CRIU);
    // Each kind of run loads its own file: the switched-on one says the kernel tracks dirty pages, the plain one does not.
    const ask = (env: NodeJS.ProcessEnv): { status: number | null; log: string } => {
      const log = join(dir, `check-${Object.keys(env).length}.log`);
      const c = spawnSync(CRIU, ['check', '--feature', 'mem_dirty_track', '-v4', '-o', log], { encoding: 'utf8', env });
      return { status: c.status, log: readFileSync(log, 'utf8') };
    };
    const on = ask({ ...process.env, FERRY_CRIU_CLEAN: '/dev/null' });
    const off = ask({ ...process.env, FERRY_CRIU_CLEAN: '' });
    assert.equal(on.status, 0, on.log.slice(-1500));
    assert.notEqual(off.status, 0, 'the plain run still knows better');
    for (const x of [on, off]) assert.match(x.log, /Loaded kdat cache from/, 'no probing: the cache was found');
    assert.ok(!existsSync(`${CRIU_CLEAN_CACHE_FILE}.tmp`), 'nothing left in /run by a probing CRIU');
    assert.deepEqual(readdirSync(CRIU_RUN_DIR).filter((n) => n.includes('.ferry-')), [], 'no temporary left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The frames that back two read-only anonymous pages of a fresh process after a read of each (python3, ctypes). */
function readFaultFrames(): [bigint, bigint] {
  const script = [
    'import ctypes, struct',
    'libc = ctypes.CDLL(None)',
    'libc.mmap.restype = ctypes.c_void_p',
    'libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]',
    'def frame():',
    '    p = libc.mmap(None, 4096, 1, 0x22, -1, 0)  # PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS',
    '    ctypes.c_char.from_address(p).value',
    '    with open("/proc/self/pagemap", "rb") as f:',
    '        f.seek(p // 4096 * 8)',
    '        return struct.unpack("<Q", f.read(8))[0] & ((1 << 55) - 1)',
    'print(frame(), frame())',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [a, b] = r.stdout.trim().split(' ').map((x) => BigInt(x));
  return [a!, b!];
}

test('real CRIU: its zero-page frame matches no page where read faults get frames of their own (native/criu/zero-page.c)', async (t) => {
  if (!realCriu(t, 'CRIU zero-page test', { shims: true })) return;
  if (isTmpfs(CRIU_RUN_DIR)) return t.skip('/run is a tmpfs: CRIU keeps its cache itself (the probe is the same)');
  const [a, b] = readFaultFrames();
  assert.ok(a > 0n && b > 0n, 'frame numbers are readable as root');
  for (const cleanPages of [false, true]) {
    const r = await primeCriuCache(CRIU, { cleanPages });
    assert.equal(r.status, 'written', JSON.stringify(r));
    // struct kerndat_s of CRIU 4.x: u32 magic1 (0x57023458), u32 magic2, dev_t, int, then u64 zero_page_pfn.
    const kdat = readFileSync(cleanPages ? CRIU_CLEAN_CACHE_FILE : CRIU_CACHE_FILE);
    assert.equal(kdat.readUInt32LE(0), 0x57023458, 'the layout this test reads');
    const zeroPfn = kdat.readBigUInt64LE(24);
    if (a === b) assert.equal(zeroPfn, a, 'a shared zero page: CRIU keeps its own answer');
    else assert.equal(zeroPfn, (1n << 55n) - 1n, `read faults got frames ${a} and ${b}: no frame may pass for the zero page`);
    // Ferry's rounds leave out the same pages CRIU's dumps do (anonPageRanges), or the final image misses one.
    assert.equal(zeroPfn, ferryZeroPfn(), 'ferry-dirty-track zero-pfn agrees with CRIU');
  }
});

test('real CRIU: the wrapper scripts/setup builds runs CRIU with Ferry\'s shims preloaded (recv, clean pages, tmpfs archiver, zero page)', (t) => {
  if (!realCriu(t, 'CRIU wrapper test', { root: false, shims: true })) return;
  const shim = '/opt/ferry/lib/ferry-criu-uncork.so';
  const wrapper = readFileSync(CRIU, 'latin1'); // a program (native/criu/wrapper.c) with the preload list built in
  assert.ok(wrapper.includes(`${shim}:/opt/ferry/lib/ferry-criu-clean.so:/opt/ferry/lib/ferry-criu-tar.so:/opt/ferry/lib/ferry-criu-zeropage.so\0`), 'the preload list');
  const tarShim = spawnSync('nm', ['-D', '--defined-only', '/opt/ferry/lib/ferry-criu-tar.so'], { encoding: 'utf8' });
  assert.match(tarShim.stdout, /\bT execvp\b/, 'the tmpfs archiver wraps execvp()');
  const symbols = spawnSync('nm', ['-D', '--defined-only', shim], { encoding: 'utf8' });
  assert.equal(symbols.status, 0, symbols.stderr);
  assert.match(symbols.stdout, /\bT recv\b/, 'the shim defines recv()');
  // CRIU still works through it (runc.test's checkpoint finds the tmpfs archiver's lines in CRIU's logs).
  const r = spawnSync(CRIU, ['check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

/**
 * Sends each request (hex) to `criu swrk FD` started as `argv` on a SOCK_SEQPACKET socket pair (Node
 * has none, so a Python client) and returns the answers in hex; the exit status of each CRIU too.
 */
function swrk(argv: readonly string[], requests: readonly string[], env: NodeJS.ProcessEnv): { answers: string[]; statuses: number[] } {
  const script = `import json, socket, subprocess, sys
argv, reqs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"answers": [], "statuses": []}
for hexreq in reqs:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = subprocess.Popen(argv + ["swrk", str(b.fileno())], pass_fds=[b.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b.close()
    a.send(bytes.fromhex(hexreq))
    out["answers"].append(a.recv(65536).hex())
    a.close()
    out["statuses"].append(p.wait())
print(json.dumps(out))`;
  const r = spawnSync('python3', ['-c', script, JSON.stringify(argv), JSON.stringify(requests)], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { answers: string[]; statuses: number[] };
}

test('real CRIU: the wrapper answers runc\'s VERSION and FEATURE_CHECK requests from CRIU\'s own answers, kept per CRIU binary and boot', (t) => {
  if (!realCriu(t, 'CRIU wrapper cache test', { root: false, shims: true })) return;
  const root = '/opt/ferry/criu-root/usr';
  const bare = [`${root}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`, '--library-path', `${root}/lib/x86_64-linux-gnu`, `${root}/sbin/criu`];
  const dir = mkdtempSync(join(tmpdir(), 'ferry-criu-rpc-'));
  try {
    const env = { ...process.env, FERRY_CRIU_RPC_DIR: dir };
    const version = '080a'; // criu_req { type: VERSION }
    const lazy = '08092a021001'; // criu_req { type: FEATURE_CHECK, features { lazy_pages: true } }
    const withOpts = '0809' + '1205080a800301' + '2a021001'; // as runc 1.1 sends it: opts { images_dir_fd: 10, lazy_pages: true } too
    const own = swrk(bare, [version, lazy], env); // CRIU itself, no wrapper
    assert.deepEqual(own.statuses, [0, 0]);
    assert.match(own.answers[0]!, /^080a1001/, 'CRIU: a successful VERSION answer');
    assert.match(own.answers[1]!, /^08091001/, 'CRIU: a successful FEATURE_CHECK answer');

    const first = swrk([CRIU], [version, lazy, withOpts], env);
    assert.deepEqual(first, { answers: [own.answers[0], own.answers[1], own.answers[1]], statuses: [0, 0, 0] }, 'the same answers as CRIU\'s');
    const kept = readdirSync(dir).sort();
    assert.equal(kept.length, 2, `one answer per type and features: ${kept.join(', ')}`);
    assert.match(kept[0]!, /-10-$/);
    assert.match(kept[1]!, /-9-1001$/);
    assert.equal(readFileSync(join(dir, kept[0]!)).toString('hex'), own.answers[0]);

    // The kept answer is what the wrapper sends: a (valid) answer put there comes back as it is …
    const planted = '080a1001520408091002'; // success, version 9.2
    writeFileSync(join(dir, kept[0]!), Buffer.from(planted, 'hex'));
    assert.deepEqual(swrk([CRIU], [version], env), { answers: [planted], statuses: [0] });
    // … a request with a field the wrapper does not know (keep_open) goes to CRIU, which answers itself …
    const keepOpen = swrk([CRIU], ['080a2001'], env);
    assert.equal(keepOpen.answers[0], own.answers[0], 'keep_open: CRIU\'s own answer');
    assert.deepEqual(keepOpen, swrk(bare, ['080a2001'], env), 'and the same exit as CRIU\'s (it waited for more)');
    // … and a damaged answer is asked of CRIU again and replaced.
    writeFileSync(join(dir, kept[0]!), 'garbage');
    assert.deepEqual(swrk([CRIU], [version], env), { answers: [own.answers[0]], statuses: [0] });
    assert.equal(readFileSync(join(dir, kept[0]!)).toString('hex'), own.answers[0]);
    assert.deepEqual(readdirSync(dir).sort(), kept, 'no temporary file left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
