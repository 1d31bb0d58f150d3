'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');

const { startEmulator, TOKEN_PATH } = require('../emulator');

const CLI = path.join(__dirname, '..', 'emulator', 'cli.js');
const GOOGLE = { 'Metadata-Flavor': 'Google' };

// Plain node:http request; resolves { status, headers, body } once the body
// has fully arrived, rejects on any socket / framing error or on `timeoutMs`.
function request(emu, opts) {
  const o = Object.assign({ method: 'GET', path: TOKEN_PATH, headers: GOOGLE, timeoutMs: 2000 }, opts);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: emu.port,
      method: o.method,
      path: o.path,
      headers: o.headers,
      agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.setTimeout(o.timeoutMs, () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
    req.on('error', reject);
    if (o.body !== undefined) req.write(typeof o.body === 'string' ? o.body : JSON.stringify(o.body));
    req.end();
  });
}

// Runs `fn(emu)` against a fresh emulator and always closes it.
async function withEmu(options, fn) {
  const emu = await startEmulator(options);
  try {
    return await fn(emu);
  } finally {
    await emu.close();
  }
}

function json(res) {
  return JSON.parse(res.body.toString('utf8'));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('serves the token with the right body and headers', () => withEmu({ token: 'tok-1', expiresIn: 1234 }, async (emu) => {
  assert.equal(emu.address, '127.0.0.1:' + emu.port);
  assert.equal(emu.url, 'http://127.0.0.1:' + emu.port + TOKEN_PATH);
  const res = await request(emu);
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.equal(res.headers['metadata-flavor'], 'Google');
  assert.equal(Number(res.headers['content-length']), res.body.length);
  assert.deepEqual(json(res), { access_token: 'tok-1', expires_in: 1234, token_type: 'Bearer' });
  // Served as given, not counting down.
  assert.equal(json(await request(emu)).expires_in, 1234);
  // A query string is ignored, like on the real service.
  assert.equal((await request(emu, { path: TOKEN_PATH + '?alt=json' })).status, 200);
}));

test('defaults: random fake token, 3600 s, bound to 127.0.0.1', () => withEmu({}, async (emu) => {
  const body = json(await request(emu));
  assert.match(body.access_token, /^emulator-[0-9a-f]{32}$/);
  assert.equal(body.expires_in, 3600);
  assert.match(emu.address, /^127\.0\.0\.1:\d+$/);
}));

test('403 without Metadata-Flavor, with a wrong one, and with X-Forwarded-For', () => withEmu({ token: 'secret' }, async (emu) => {
  for (const headers of [{}, { 'Metadata-Flavor': 'google' }, { 'Metadata-Flavor': 'Google', 'X-Forwarded-For': '10.0.0.1' }]) {
    const res = await request(emu, { headers });
    assert.equal(res.status, 403, JSON.stringify(headers));
    assert.match(res.headers['content-type'], /^text\/plain/);
    assert.ok(res.body.length > 0);
    assert.ok(!res.body.toString().includes('secret'));
  }
  assert.equal(emu.requests, 3);
}));

test('404 on other paths, 405 on other methods; counting and log', () => withEmu({}, async (emu) => {
  assert.equal((await request(emu, { path: '/computeMetadata/v1/instance/nope' })).status, 404);
  assert.equal((await request(emu, { path: '/latest/meta-data/' })).status, 404);
  assert.equal((await request(emu, { path: TOKEN_PATH + '/' })).status, 404);
  assert.equal(emu.requests, 0);
  assert.equal((await request(emu, { method: 'POST' })).status, 405);
  await request(emu);
  await request(emu, { headers: {} });
  assert.equal(emu.requests, 3);
  assert.equal(emu.log.length, 6);
  const last = emu.log[emu.log.length - 1];
  assert.equal(last.method, 'GET');
  assert.equal(last.path, TOKEN_PATH);
  assert.equal(last.headers['metadata-flavor'], undefined);
  assert.equal(typeof last.time, 'number');
  emu.reset();
  assert.equal(emu.requests, 0);
  assert.equal(emu.log.length, 0);
}));

test('setToken changes what is served', () => withEmu({ token: 'a' }, async (emu) => {
  emu.setToken('b', 60);
  assert.deepEqual(json(await request(emu)), { access_token: 'b', expires_in: 60, token_type: 'Bearer' });
  emu.setToken('c');
  assert.deepEqual(json(await request(emu)), { access_token: 'c', expires_in: 60, token_type: 'Bearer' });
  assert.throws(() => emu.setToken(42), TypeError);
}));

test('countdown: expires_in counts down from when the token was set', () => withEmu({ token: 't', expiresIn: 2.2, countdown: true }, async (emu) => {
  // Fractional lifetimes keep this fast: whole seconds left, rounded down (never overstated).
  assert.equal(json(await request(emu)).expires_in, 2);
  await sleep(250);
  assert.equal(json(await request(emu)).expires_in, 1);
  emu.setToken('u', 1.1);
  assert.equal(json(await request(emu)).expires_in, 1);
  await sleep(250);
  assert.equal(json(await request(emu)).expires_in, 0);
  emu.setToken('w', 0.1);
  await sleep(250);
  assert.equal(json(await request(emu)).expires_in, 0, 'never negative');
  emu.setToken('v', 3600);
  const left = json(await request(emu)).expires_in;
  assert.ok(left === 3599 || left === 3600, String(left));
}));

test('fault: status with times, then normal; requests counted', () => withEmu({ token: 't' }, async (emu) => {
  emu.fault({ status: 503, times: 2 });
  for (let i = 0; i < 2; i++) {
    const res = await request(emu);
    assert.equal(res.status, 503);
    assert.match(res.body.toString(), /503/);
  }
  assert.equal((await request(emu)).status, 200);
  assert.equal(emu.requests, 3);
  emu.fault({ status: 500 });
  for (let i = 0; i < 3; i++) assert.equal((await request(emu)).status, 500);
  emu.fault(null);
  assert.equal((await request(emu)).status, 200);
}));

test('fault: redirect sets Location; bare 3xx status points back at the emulator', () => withEmu({}, async (emu) => {
  emu.fault({ redirect: 'http://127.0.0.1:9/x', status: 307 });
  let res = await request(emu);
  assert.equal(res.status, 307);
  assert.equal(res.headers.location, 'http://127.0.0.1:9/x');
  emu.fault({ redirect: 'http://127.0.0.1:9/y' });
  res = await request(emu);
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, 'http://127.0.0.1:9/y');
  emu.fault({ status: 301 });
  res = await request(emu);
  assert.equal(res.status, 301);
  assert.equal(res.headers.location, emu.url);
}));

test('fault: delayMs waits, then answers normally', () => withEmu({ token: 't' }, async (emu) => {
  emu.fault({ delayMs: 150, times: 1 });
  let t0 = Date.now();
  const res = await request(emu);
  assert.ok(Date.now() - t0 >= 140, 'took ' + (Date.now() - t0));
  assert.equal(json(res).access_token, 't');
  t0 = Date.now();
  await request(emu);
  assert.ok(Date.now() - t0 < 100);
  // delayMs combines with another fault.
  emu.fault({ delayMs: 50, status: 503 });
  assert.equal((await request(emu)).status, 503);
}));

test('fault: hang — client times out, close() still resolves promptly', async () => {
  const emu = await startEmulator({});
  try {
    emu.fault({ hang: true });
    const t0 = Date.now();
    await assert.rejects(request(emu, { timeoutMs: 200 }), { code: 'CLIENT_TIMEOUT' });
    assert.ok(Date.now() - t0 < 600);
    // A second client is still hanging when the emulator goes away.
    const pending = request(emu, { timeoutMs: 5000 });
    pending.catch(() => {});
    await sleep(50);
    assert.equal(emu.requests, 2);
    const t1 = Date.now();
    await emu.close();
    assert.ok(Date.now() - t1 < 200, 'close took ' + (Date.now() - t1));
    await assert.rejects(pending, (e) => e.code !== 'CLIENT_TIMEOUT');
  } finally {
    await emu.close();
  }
});

test('fault: hangAfterHeaders — headers arrive, the body never does', () => withEmu({}, async (emu) => {
  emu.fault({ hangAfterHeaders: true });
  await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: emu.port, path: TOKEN_PATH, headers: GOOGLE, agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.ok(Number(res.headers['content-length']) > 0);
      res.on('data', () => reject(new Error('got body data')));
      setTimeout(() => { req.destroy(); resolve(); }, 150);
    });
    req.on('error', () => {});
  });
}));

test('fault: resetMidBody gives a client error', () => withEmu({}, async (emu) => {
  emu.fault({ resetMidBody: true });
  await assert.rejects(request(emu));
}));

test('fault: truncate sends half the body, correctly framed', () => withEmu({ token: 'abcdefghijklmnop' }, async (emu) => {
  const full = JSON.stringify({ access_token: 'abcdefghijklmnop', expires_in: 3600, token_type: 'Bearer' });
  emu.fault({ truncate: true });
  const res = await request(emu);
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), full.slice(0, Math.floor(full.length / 2)));
  assert.equal(Number(res.headers['content-length']), res.body.length);
  assert.throws(() => json(res), SyntaxError);
}));

test('fault: garbage and body', () => withEmu({}, async (emu) => {
  emu.fault({ garbage: true });
  let res = await request(emu);
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.equal(res.body.toString(), 'not json{{');

  emu.fault({ body: { access_token: 42, expires_in: '3600', token_type: 'Bearer' } });
  assert.deepEqual(json(await request(emu)), { access_token: 42, expires_in: '3600', token_type: 'Bearer' });
  emu.fault({ body: '{"access_token":"","expires_in":-1}' });
  assert.equal((await request(emu)).body.toString(), '{"access_token":"","expires_in":-1}');
  emu.fault({ body: null });
  assert.equal((await request(emu)).body.toString(), 'null');
}));

test('fault: hugeBytes and hugeChunked deliver the bytes', () => withEmu({}, async (emu) => {
  const size = 1024 * 1024 + 17;
  emu.fault({ hugeBytes: size, times: 1 });
  let res = await request(emu);
  assert.equal(res.status, 200);
  assert.equal(Number(res.headers['content-length']), size);
  assert.equal(res.body.length, size);
  assert.ok(res.body.every((b) => b === 0x61));

  emu.fault({ hugeChunked: size, times: 1 });
  res = await request(emu);
  assert.equal(res.headers['transfer-encoding'], 'chunked');
  assert.equal(res.headers['content-length'], undefined);
  assert.equal(res.body.length, size);
  assert.equal(emu.bytesStreamed, 2 * size);
}));

test('fault: huge stream stops when the client goes away', () => withEmu({}, async (emu) => {
  for (const kind of ['hugeBytes', 'hugeChunked']) {
    emu.reset();
    emu.fault({ [kind]: 1024 * 1024 * 1024 });
    await new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: emu.port, path: TOKEN_PATH, headers: GOOGLE, agent: false }, (res) => {
        let got = 0;
        res.on('data', (d) => {
          got += d.length;
          if (got >= 256 * 1024) { req.destroy(); resolve(); }
        });
      });
      req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
    });
    await sleep(100);
    const sent = emu.bytesStreamed;
    await sleep(100);
    assert.equal(emu.bytesStreamed, sent, kind + ' kept streaming');
    assert.ok(sent < 64 * 1024 * 1024, kind + ' sent ' + sent);
  }
}));

test('fault: dribbleMs sends the normal response byte by byte', () => withEmu({ token: 'x' }, async (emu) => {
  emu.fault({ dribbleMs: 1, times: 1 });
  const chunks = [];
  const t0 = Date.now();
  const body = await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: emu.port, path: TOKEN_PATH, headers: GOOGLE, agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['metadata-flavor'], 'Google');
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    req.on('error', reject);
  });
  assert.deepEqual(JSON.parse(body), { access_token: 'x', expires_in: 3600, token_type: 'Bearer' });
  assert.ok(chunks.length > 10, 'body came in ' + chunks.length + ' chunks');
  // Status line and headers (~120 bytes) are dribbled too.
  assert.ok(Date.now() - t0 >= 150, 'took ' + (Date.now() - t0));
  assert.equal(json(await request(emu)).access_token, 'x');
}));

test('fault: dropConnection closes the socket without a response', () => withEmu({}, async (emu) => {
  emu.fault({ dropConnection: true, times: 1 });
  await assert.rejects(request(emu), (e) => e.code === 'ECONNRESET' || /socket hang up/.test(e.message));
  assert.equal((await request(emu)).status, 200);
  assert.equal(emu.requests, 2);
}));

test('fault specs are validated', () => withEmu({}, async (emu) => {
  for (const bad of [{}, { times: 1 }, { nope: true }, { hang: 1 }, { status: 99 }, { hang: true, garbage: true },
    { status: 503, hang: true }, { redirect: 'http://x/', status: 200 }, { hugeBytes: -1 }, { times: 1.5, hang: true }, 'x', [1],
    { redirect: 'http://x/\r\nSet-Cookie: a=1' }, { redirect: 'x' }, { delayMs: Infinity }, { body: () => 1 }]) {
    assert.throws(() => emu.fault(bad), TypeError, JSON.stringify(bad));
  }
  emu.fault({ status: 503, times: 0 });
  assert.equal((await request(emu)).status, 200);
}));

test('control API over HTTP', () => withEmu({ token: 'ctl-secret' }, async (emu) => {
  // The control API wants what no web page can send without a preflight: Metadata-Flavor and a JSON body.
  const ctl = (name, body) => request(emu, {
    method: body === undefined && name === 'stats' ? 'GET' : 'POST',
    path: '/_emulator/' + name,
    headers: { 'Metadata-Flavor': 'Google', 'Content-Type': 'application/json' },
    body,
  });
  let stats = json(await ctl('stats'));
  assert.equal(stats.requests, 0);
  assert.equal(stats.token_fingerprint, crypto.createHash('sha256').update('ctl-secret').digest('hex').slice(0, 8));
  assert.ok(!JSON.stringify(stats).includes('ctl-secret'));

  assert.equal((await ctl('fault', { status: 503, times: 1 })).status, 204);
  assert.equal((await request(emu)).status, 503);
  assert.equal((await request(emu)).status, 200);
  assert.equal((await ctl('fault', { status: 500 })).status, 204);
  assert.equal((await request(emu)).status, 500);
  assert.equal((await ctl('fault', null)).status, 204);
  assert.equal((await request(emu)).status, 200);
  assert.equal((await ctl('fault', { bogus: 1 })).status, 400);
  assert.equal((await ctl('fault', '{not json')).status, 400);

  assert.equal((await ctl('token', { token: 'new-token', expires_in: 77 })).status, 204);
  assert.deepEqual(json(await request(emu)), { access_token: 'new-token', expires_in: 77, token_type: 'Bearer' });
  assert.equal((await ctl('token', { token: 5 })).status, 400);

  stats = json(await ctl('stats'));
  assert.equal(stats.requests, 5, 'control requests are not counted');
  assert.equal(stats.requests, emu.requests);
  await ctl('fault', { status: 503 });
  assert.equal((await ctl('reset')).status, 204);
  stats = json(await ctl('stats'));
  assert.equal(stats.requests, 0);
  assert.equal(stats.fault, null);
  assert.equal((await request(emu)).status, 200);
  assert.equal((await request(emu, { path: '/_emulator/nope', headers: {} })).status, 404);
}));

test('close() is idempotent and frees the port', async () => {
  const emu = await startEmulator({});
  const port = emu.port;
  await request(emu);
  await Promise.all([emu.close(), emu.close()]);
  await emu.close();
  const again = await startEmulator({ port });
  await again.close();
});

// --- CLI -------------------------------------------------------------------

function runCli(args, opts) {
  const o = opts || {};
  const child = spawn(process.execPath, [CLI].concat(args), { env: Object.assign({}, process.env, o.env), stdio: 'pipe' });
  const out = { stdout: '', stderr: '', child };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { out.stdout += d; });
  child.stderr.on('data', (d) => { out.stderr += d; });
  if (o.stdin !== undefined) child.stdin.end(o.stdin);
  else child.stdin.end();
  out.exit = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  out.ready = new Promise((resolve, reject) => {
    const check = () => {
      const lines = out.stdout.split('\n');
      if (lines.length >= 3) {
        child.stdout.removeListener('data', check);
        resolve(lines.slice(0, 2));
      }
    };
    child.stdout.on('data', check);
    out.exit.then(() => reject(new Error('CLI exited early: ' + out.stderr)));
  });
  out.ready.catch(() => {});
  return out;
}

async function withCli(args, opts, fn) {
  const cli = runCli(args, opts);
  try {
    const lines = await cli.ready;
    const m = /^export YC_METADATA_ADDR=(127\.0\.0\.1:(\d+))$/.exec(lines[1]);
    assert.ok(m, lines[1]);
    assert.equal(lines[0], 'yc-metadata-token emulator listening on http://' + m[1]);
    return await fn({ port: Number(m[2]) }, cli);
  } finally {
    cli.child.kill('SIGTERM');
    await cli.exit;
  }
}

test('CLI: serves the given token, logs without it, stops on SIGTERM', async () => {
  const token = 'abc-cli-secret-123';
  await withCli(['--port', '0', '--token', token], {}, async (emu, cli) => {
    const res = await request(emu);
    assert.deepEqual(json(res), { access_token: token, expires_in: 3600, token_type: 'Bearer' });
    assert.equal((await request(emu, { headers: {} })).status, 403);
    cli.child.kill('SIGTERM');
    const { code } = await cli.exit;
    assert.equal(code, 0);
    // The listening line, then one export line each for this package, Google's libraries and the YDB SDKs.
    assert.deepEqual(cli.stdout.split('\n'), [
      'yc-metadata-token emulator listening on http://127.0.0.1:' + emu.port,
      'export YC_METADATA_ADDR=127.0.0.1:' + emu.port,
      'export GCE_METADATA_HOST=127.0.0.1:' + emu.port,
      'export YDB_METADATA_CREDENTIALS=1',
      'export YDB_METADATA_CREDENTIALS_ENDPOINT=http://127.0.0.1:' + emu.port + TOKEN_PATH,
      '',
    ]);
    const lines = cli.stderr.split('\n').filter((l) => l.includes(TOKEN_PATH));
    assert.equal(lines.length, 2);
    assert.match(lines[0], /GET \S+ 200 \d+ms/);
    assert.match(lines[1], /GET \S+ 403 \d+ms/);
    assert.ok(!cli.stderr.includes(token) && !cli.stdout.includes(token), 'token leaked');
  });
});

test('CLI: token sources (stdin, file, env), --fault, --expires-in, --countdown', async () => {
  await withCli(['--port=0', '--token', '-', '--expires-in', '60', '--countdown'], { stdin: '  from-stdin\n' }, async (emu) => {
    const body = json(await request(emu));
    // Counting down from 60, rounded down: 59 once any time has passed since the start.
    assert.ok(body.expires_in === 59 || body.expires_in === 60, String(body.expires_in));
    assert.deepEqual(body, { access_token: 'from-stdin', expires_in: body.expires_in, token_type: 'Bearer' });
  });
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'emu-')), 'token');
  fs.writeFileSync(file, 'from-file\n');
  await withCli(['--port', '0', '--token-file', file, '--fault', '{"status":503,"times":1}'], {}, async (emu) => {
    assert.equal((await request(emu)).status, 503);
    assert.equal(json(await request(emu)).access_token, 'from-file');
  });
  fs.rmSync(path.dirname(file), { recursive: true });
  await withCli(['--port', '0', '--token-env', 'EMU_TEST_TOKEN'], { env: { EMU_TEST_TOKEN: 'from-env' } }, async (emu) => {
    assert.equal(json(await request(emu)).access_token, 'from-env');
  });
  await withCli(['--port', '0'], {}, async (emu, cli) => {
    assert.match(json(await request(emu)).access_token, /^emulator-[0-9a-f]{32}$/);
    assert.match(cli.stderr, /random fake token/);
  });
});

test('CLI: --help exits 0, bad flags and values exit 2', async () => {
  const help = runCli(['--help']);
  assert.equal((await help.exit).code, 0);
  assert.match(help.stdout, /Usage:/);
  const bad = [['--bogus'], ['--port', 'x'], ['--port', '70000'], ['--port'], ['--expires-in', '-1'],
    ['--fault', '{'], ['--fault', '{"nope":1}'], ['--token', 'a', '--token-env', 'B'], ['--token-env', 'EMU_UNSET_VAR_X'],
    ['--token-file', '/nonexistent/emu-token']];
  // In parallel: each is a Node start-up.
  await Promise.all(bad.map(async (args) => {
    const r = runCli(args, { env: { EMU_UNSET_VAR_X: undefined } });
    const { code } = await r.exit;
    assert.equal(code, 2, args.join(' ') + ' → ' + code + ' ' + r.stderr);
    assert.match(r.stderr, /yc-metadata-token emulator: .+/);
    assert.equal(r.stdout, '');
  }));
});
