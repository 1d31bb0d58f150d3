'use strict';

// The emulator is a credential server: with --sa-key, --token-command or --token it serves a real
// IAM token on a fixed port of a laptop (issue 17). Browsers must not reach it (DNS rebinding, CSRF
// on the control API), no request may end it, and the docs must not put a real token into argv.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const { startEmulator, TOKEN_PATH } = require('../emulator');
const metadata = require('../emulator/metadata');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'emulator', 'cli.js');
const SECRET = 'real-iam-token-t1.9euelZqSECRET';
const GOOGLE = { 'Metadata-Flavor': 'Google' };
const CONTROL = { 'Metadata-Flavor': 'Google', 'Content-Type': 'application/json' };
// What a page after DNS rebinding would read: the token, the metadata tree, the control API.
const READ_PATHS = [TOKEN_PATH, '/computeMetadata/v1/instance/?recursive=true', '/computeMetadata/v1/project/project-id',
  '/_emulator/stats'];

// node:http request to `connect` (default 127.0.0.1) on `port`; `headers` may set Host.
function request(port, o) {
  const opts = Object.assign({ method: 'GET', path: TOKEN_PATH, headers: GOOGLE, connect: '127.0.0.1', timeoutMs: 3000 }, o);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.connect, port, method: opts.method, path: opts.path, headers: opts.headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    if (opts.body !== undefined) req.write(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    req.end();
  });
}

// Raw bytes over TCP, for requests node:http will not send (no Host at all, HTTP/1.0).
function raw(port, text) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(text));
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => { got += d; });
    socket.on('end', () => resolve({ status: Number((/^HTTP\/1\.[01] (\d{3})/.exec(got) || [])[1]), text: got }));
    socket.on('error', reject);
    socket.setTimeout(3000, () => socket.destroy(new Error('timeout')));
  });
}

function noCors(res, what) {
  for (const name of Object.keys(res.headers)) {
    assert.ok(!/^access-control-/i.test(name), what + ': CORS header ' + name);
  }
}

function assertRefused(res, what, reason) {
  assert.equal(res.status, 403, what + ' → ' + res.status + ' ' + res.body);
  assert.ok(!res.body.includes(SECRET), what + ': the token is in the refusal');
  assert.match(res.body, reason, what);
  noCors(res, what);
}

async function withEmu(options, fn) {
  const emu = await startEmulator(Object.assign({ token: SECRET }, options));
  try {
    return await fn(emu);
  } finally {
    await emu.close();
  }
}

// --- 1. DNS rebinding ------------------------------------------------------

test('DNS rebinding: a Host that is neither loopback nor the bound address gets 403 on every path, without the token', () => withEmu({}, async (emu) => {
  const p = emu.port;
  const hosts = ['evil.example:' + p, 'evil.example', 'EVIL.example:' + p, 'localhost.evil.example:' + p,
    '127.0.0.1.nip.io:' + p, 'localhost.:' + p, '127.0.0.1.:' + p, '127.0.0.2:' + p, '0.0.0.0:' + p, '[::2]:' + p,
    '127.0.0.1:1', 'localhost:' + (p === 65535 ? 1 : p + 1), '[::1]:1', 'user@127.0.0.1:' + p, '127.0.0.1:' + p + '.evil',
    '127.0.0.1:' + p + ':' + p, '127.0.0.1:'];
  let refused = 0;
  for (const host of hosts) {
    for (const p2 of READ_PATHS) {
      assertRefused(await request(p, { path: p2, headers: Object.assign({ Host: host }, GOOGLE) }), JSON.stringify(host) + ' ' + p2, /Host/);
      refused += 1;
    }
  }
  // Refused before anything else: not a token request served, and counted as refused.
  assert.equal(emu.requests, 0);
  assert.equal(emu.stats().refused, refused);
  assert.equal(emu.stats().requests, 0);
}));

test('loopback Hosts are served: 127.0.0.1, localhost in any case, [::1], with the bound port or none', () => withEmu({}, async (emu) => {
  const p = emu.port;
  for (const host of ['127.0.0.1:' + p, '127.0.0.1', 'localhost:' + p, 'localhost', 'LocalHost:' + p, 'LOCALHOST',
    '[::1]:' + p, '[::1]', '[0:0:0:0:0:0:0:1]:' + p]) {
    const res = await request(p, { headers: Object.assign({ Host: host }, GOOGLE) });
    assert.equal(res.status, 200, host + ' → ' + res.status + ' ' + res.body);
    assert.equal(JSON.parse(res.body).access_token, SECRET);
    noCors(res, host);
  }
  assert.equal(emu.stats().refused, 0);
}));

test('no Host at all, or an empty one, is refused (HTTP/1.0); HTTP/1.1 without Host never gets the token', () => withEmu({}, async (emu) => {
  const r10 = await raw(emu.port, 'GET ' + TOKEN_PATH + ' HTTP/1.0\r\nMetadata-Flavor: Google\r\n\r\n');
  assert.equal(r10.status, 403, r10.text);
  assert.ok(!r10.text.includes(SECRET));
  const empty = await raw(emu.port, 'GET ' + TOKEN_PATH + ' HTTP/1.0\r\nHost: \r\nMetadata-Flavor: Google\r\n\r\n');
  assert.equal(empty.status, 403, empty.text);
  assert.ok(!empty.text.includes(SECRET));
  const r11 = await raw(emu.port, 'GET ' + TOKEN_PATH + ' HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n');
  assert.ok(r11.status === 400 || r11.status === 403, r11.text);
  assert.ok(!r11.text.includes(SECRET));
  // With a Host it is served, HTTP/1.0 or not.
  const ok = await raw(emu.port, 'GET ' + TOKEN_PATH + ' HTTP/1.0\r\nHost: 127.0.0.1:' + emu.port + '\r\nMetadata-Flavor: Google\r\n\r\n');
  assert.equal(ok.status, 200, ok.text);
}));

test('any Origin is refused, same-origin included; Sec-Fetch-Site other than none too; Node\'s fetch is served', () => withEmu({}, async (emu) => {
  const p = emu.port;
  const browserish = [{ Origin: 'http://evil.example' }, { Origin: 'http://127.0.0.1:' + p }, { Origin: 'http://localhost:' + p },
    { Origin: 'null' }, { Origin: '' }, { 'Sec-Fetch-Site': 'same-origin' }, { 'Sec-Fetch-Site': 'same-site' },
    { 'Sec-Fetch-Site': 'cross-site' }, { 'Sec-Fetch-Site': 'None' }, { Origin: 'http://127.0.0.1:' + p, 'Sec-Fetch-Site': 'none' }];
  for (const extra of browserish) {
    for (const p2 of READ_PATHS) {
      assertRefused(await request(p, { path: p2, headers: Object.assign({}, GOOGLE, extra) }), JSON.stringify(extra) + ' ' + p2, /Origin|Sec-Fetch-Site/);
    }
  }
  assert.equal(emu.requests, 0);
  // A navigation typed into the address bar (Sec-Fetch-Site: none) cannot send Metadata-Flavor; a
  // tool that sends both is not a page, and is served.
  assert.equal((await request(p, { headers: Object.assign({ 'Sec-Fetch-Site': 'none' }, GOOGLE) })).status, 200);
  // Node's fetch sends Sec-Fetch-Mode: cors but no Origin: served.
  const res = await fetch('http://127.0.0.1:' + p + TOKEN_PATH, { headers: GOOGLE });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).access_token, SECRET);
}));

test('no answer carries CORS headers: preflights are refused, 200s and 404s have none', () => withEmu({}, async (emu) => {
  const p = emu.port;
  for (const p2 of READ_PATHS.concat(['/_emulator/token', '/_emulator/fault', '/_emulator/reset', '/nope'])) {
    const pre = await request(p, {
      method: 'OPTIONS',
      path: p2,
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'metadata-flavor,content-type' },
    });
    assert.equal(pre.status, 403, p2);
    noCors(pre, 'OPTIONS ' + p2);
  }
  for (const p2 of READ_PATHS.concat(['/nope'])) noCors(await request(p, { path: p2 }), p2);
}));

test('the bound address is allowed with its port: a specific address, [::1], and 0.0.0.0 / :: with this machine\'s addresses', async () => {
  await withEmu({ host: '127.0.0.2' }, async (emu) => {
    assert.equal(emu.address, '127.0.0.2:' + emu.port);
    const at = (host) => request(emu.port, { connect: '127.0.0.2', headers: Object.assign({ Host: host }, GOOGLE) });
    assert.equal((await at('127.0.0.2:' + emu.port)).status, 200);
    assert.equal((await at('localhost:' + emu.port)).status, 200);
    assertRefused(await at('127.0.0.3:' + emu.port), '127.0.0.3', /Host/);
    assertRefused(await at('127.0.0.2:1'), '127.0.0.2:1', /Host/);
  });
  await withEmu({ host: '::1' }, async (emu) => {
    assert.equal(emu.address, '[::1]:' + emu.port);
    const at = (host) => request(emu.port, { connect: '::1', headers: Object.assign({ Host: host }, GOOGLE) });
    assert.equal((await at('[::1]:' + emu.port)).status, 200);
    assert.equal((await at('127.0.0.1:' + emu.port)).status, 200);
    assertRefused(await at('evil.example:' + emu.port), 'evil on ::1', /Host/);
  });
  // The wildcard: the address the CLI prints (0.0.0.0:PORT), loopback, and the addresses of this
  // machine's interfaces (what a container or a VM on this host dials); never a name.
  const own = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list || []) if (!a.internal && !a.address.startsWith('fe80:')) own.push(a.family === 'IPv6' || a.family === 6 ? '[' + a.address + ']' : a.address);
  }
  for (const wildcard of ['0.0.0.0', '::']) {
    await withEmu({ host: wildcard }, async (emu) => {
      const bound = wildcard === '::' ? '[::]' : wildcard;
      assert.equal(emu.address, bound + ':' + emu.port);
      const at = (host) => request(emu.port, { headers: Object.assign({ Host: host }, GOOGLE) });
      for (const host of [bound, '127.0.0.1', 'localhost', '[::1]'].concat(own)) {
        const res = await at(host + ':' + emu.port);
        assert.equal(res.status, 200, wildcard + ': ' + host + ' → ' + res.body);
      }
      for (const host of ['evil.example', '203.0.113.9', '[2001:db8::9]', os.hostname() + '.evil.example']) {
        assertRefused(await at(host + ':' + emu.port), wildcard + ': ' + host, /Host/);
      }
    });
  }
});

test('allowHosts (--allow-host) adds names, with the bound port or the one given; bad entries are option errors', async () => {
  await withEmu({ allowHosts: ['metadata.test', 'Proxy.Test:18080'] }, async (emu) => {
    const at = (host) => request(emu.port, { headers: Object.assign({ Host: host }, GOOGLE) });
    assert.equal((await at('metadata.test:' + emu.port)).status, 200);
    assert.equal((await at('METADATA.test')).status, 200);
    assert.equal((await at('proxy.test:18080')).status, 200);
    assert.equal((await at('localhost:' + emu.port)).status, 200);
    assertRefused(await at('metadata.test:18080'), 'metadata.test:18080', /Host/);
    assertRefused(await at('proxy.test:' + emu.port), 'proxy.test:PORT', /Host/);
    assertRefused(await at('evil.example:' + emu.port), 'evil', /Host/);
  });
  for (const bad of ['http://x', '', 'a b', 'x/y', 'x:0', 'x:99999', 42, null]) {
    assert.throws(() => startEmulator({ allowHosts: [bad] }), { code: 'ERR_INVALID_OPTION' }, JSON.stringify(bad));
  }
  assert.throws(() => startEmulator({ allowHosts: 'metadata.test' }), { code: 'ERR_INVALID_OPTION' });
});

test('the CLI: the same Host rules, --allow-host adds names, a bad one is a usage error', async (t) => {
  const cli = startCli(['--port', '0', '--allow-host', 'metadata.test, host.docker.internal', '--token-env', 'EMU_SEC_TOKEN'], { EMU_SEC_TOKEN: SECRET });
  t.after(async () => {
    cli.child.kill('SIGTERM');
    await cli.exit;
  });
  const port = await cli.port;
  const at = (host, extra) => request(port, { headers: Object.assign({ Host: host }, GOOGLE, extra) });
  assert.equal(JSON.parse((await at('127.0.0.1:' + port)).body).access_token, SECRET);
  assert.equal((await at('metadata.test:' + port)).status, 200);
  assert.equal((await at('host.docker.internal:' + port)).status, 200);
  assertRefused(await at('evil.example:' + port), 'CLI evil', /Host/);
  assertRefused(await at('127.0.0.1:' + port, { Origin: 'http://evil.example' }), 'CLI Origin', /Origin/);
  assert.ok(!cli.stderr.includes(SECRET));
  for (const bad of [['--allow-host', 'a b'], ['--allow-host', 'x,,y'], ['--allow-host', 'http://x']]) {
    const r = spawnSync(process.execPath, [CLI, '--port', '0'].concat(bad), { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 2, bad.join(' ') + ': ' + r.stderr);
    assert.match(r.stderr, /allow/i);
  }
});

// --- 2. CSRF on the control API ---------------------------------------------

test('control API: what a web page can send (no Metadata-Flavor, text/plain, a form, an Origin) changes nothing', async (t) => {
  // A real token source, as with --sa-key: a page must not swap it for its own token.
  const emu = await startEmulator({ tokenCommand: 'echo cmd-token-1' });
  t.after(() => emu.close());
  const p = emu.port;
  const served = async () => JSON.parse((await request(p)).body).access_token;
  assert.equal(await served(), 'cmd-token-1');
  const bodies = { token: { token: 'attacker-token', expires_in: 3600 }, fault: { status: 503 }, reset: {} };
  const attempts = [
    [{ 'Content-Type': 'text/plain' }, 403],
    [{ 'Content-Type': 'text/plain;charset=UTF-8', 'Metadata-Flavor': 'Google' }, 415],
    [{ 'Content-Type': 'application/x-www-form-urlencoded', 'Metadata-Flavor': 'Google' }, 415],
    [{ 'Content-Type': 'multipart/form-data; boundary=x', 'Metadata-Flavor': 'Google' }, 415],
    [{ 'Metadata-Flavor': 'Google' }, 415],
    [{ 'Content-Type': 'application/jsonx', 'Metadata-Flavor': 'Google' }, 415],
    [{ 'Content-Type': 'application/json' }, 403],
    [{ 'Content-Type': 'application/json', 'Metadata-Flavor': 'google' }, 403],
    [Object.assign({ Origin: 'http://evil.example' }, CONTROL), 403],
    [Object.assign({ Origin: 'http://127.0.0.1:' + p }, CONTROL), 403],
    [Object.assign({ 'Sec-Fetch-Site': 'cross-site' }, CONTROL), 403],
    [Object.assign({ Host: 'evil.example:' + p }, CONTROL), 403],
    [Object.assign({ 'X-Forwarded-For': '10.0.0.1' }, CONTROL), 403],
  ];
  for (const name of Object.keys(bodies)) {
    for (const [headers, status] of attempts) {
      const res = await request(p, { method: 'POST', path: '/_emulator/' + name, headers, body: bodies[name] });
      assert.equal(res.status, status, name + ' ' + JSON.stringify(headers) + ' → ' + res.status + ' ' + res.body);
      noCors(res, name);
      assert.ok(res.body.length > 0, 'a refusal says why');
    }
  }
  // Nothing changed: the source's token, no fault, the count of token requests kept.
  assert.equal(await served(), 'cmd-token-1');
  const stats = emu.stats();
  assert.equal(stats.fault, null);
  assert.equal(stats.requests, 2);
  // stats needs Metadata-Flavor too.
  assert.equal((await request(p, { path: '/_emulator/stats', headers: {} })).status, 403);
  assert.equal((await request(p, { path: '/_emulator/stats' })).status, 200);
  // With both headers (a charset is fine) it works.
  const ok = await request(p, { method: 'POST', path: '/_emulator/token', headers: { 'Metadata-Flavor': 'Google', 'Content-Type': 'Application/JSON; charset=utf-8' }, body: { token: 'set-by-test' } });
  assert.equal(ok.status, 204, ok.body);
  assert.equal(await served(), 'set-by-test');
});

// --- 3. No request ends it ---------------------------------------------------

function startCli(args, env) {
  const child = spawn(process.execPath, [CLI].concat(args), { stdio: ['ignore', 'pipe', 'pipe'], env: Object.assign({}, process.env, env) });
  const out = { stdout: '', stderr: '', child };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { out.stdout += d; });
  child.stderr.on('data', (d) => { out.stderr += d; });
  out.exit = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  out.port = new Promise((resolve, reject) => {
    child.stdout.on('data', () => {
      const m = /^export YC_METADATA_ADDR=127\.0\.0\.1:(\d+)$/m.exec(out.stdout);
      if (m) resolve(Number(m[1]));
    });
    out.exit.then((r) => reject(new Error('CLI exited ' + JSON.stringify(r) + ': ' + out.stderr)));
  });
  out.port.catch(() => {});
  return out;
}

test('hostile control requests get 400/413 with a reason, and the emulator process lives on and serves', async (t) => {
  const cli = startCli(['--port', '0', '--token-env', 'EMU_SEC_TOKEN'], { EMU_SEC_TOKEN: SECRET });
  t.after(async () => {
    cli.child.kill('SIGTERM');
    await cli.exit;
  });
  const port = await cli.port;
  const alive = async (what) => {
    const res = await request(port).catch((e) => ({ status: e.code || e.message, body: '' }));
    assert.equal(res.status, 200, 'after ' + what + ': ' + res.status + '; stderr: ' + cli.stderr);
    assert.equal(JSON.parse(res.body).access_token, SECRET);
    assert.equal(cli.child.exitCode, null, 'the emulator exited after ' + what);
  };
  const hostile = [
    ['fault', { redirect: 'http://127.0.0.1:9/\r\nSet-Cookie: pwned=1' }, 400, /redirect/],
    ['fault', { redirect: 'http://127.0.0.1:9/\nX: 1', status: 302 }, 400, /redirect/],
    ['fault', { redirect: 'http://127.0.0.1:9/\u0100' }, 400, /redirect/],
    ['fault', { redirect: 'http://127.0.0.1:9/ x' }, 400, /redirect/],
    ['fault', { redirect: 'not a url' }, 400, /redirect/],
    ['fault', { redirect: '/relative' }, 400, /redirect/],
    ['fault', { delayMs: 1e300 }, 400, /delayMs/],
    ['fault', { dribbleMs: 1e12 }, 400, /dribbleMs/],
    ['fault', { hugeBytes: 1e300 }, 400, /hugeBytes/],
    ['fault', { status: 1000 }, 400, /status/],
    ['fault', { hang: true, times: -1 }, 400, /times/],
    ['fault', '{"body":' + '['.repeat(200000) + ']'.repeat(200000) + '}', 400, /body/],
    ['fault', '{"__proto__": {"hang": true}}', 400, /fault/],
    ['fault', '{not json', 400, /JSON/],
    ['fault', '"\ud800"', 400, /fault/],
    ['token', { token: 'x', expires_in: 'soon' }, 400, /expires/],
    ['token', '{"token": "x", "expires_in": 1e400}', 400, /expires/],
    ['token', [], 400, /token/],
    ['token', 'null', 400, /token/],
    ['reset', 'x'.repeat(2 * 1024 * 1024), 413, /too large/],
  ];
  for (const [name, body, status, reason] of hostile) {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const what = name + ' ' + text.slice(0, 60);
    const res = await request(port, { method: 'POST', path: '/_emulator/' + name, headers: CONTROL, body: text })
      .catch((e) => ({ status: e.code || e.message, body: '' }));
    assert.equal(res.status, status, what + ' → ' + res.status + ' ' + res.body);
    assert.match(res.body, reason, what);
    await alive(what);
  }
  // A body cut short, then the socket closed.
  await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('POST /_emulator/fault HTTP/1.1\r\nHost: 127.0.0.1:' + port + '\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"st');
      setTimeout(() => { s.destroy(); resolve(); }, 50);
    });
    s.on('error', resolve);
  });
  await alive('a cut body');
  // Garbage on the wire.
  await raw(port, 'GARBAGE\r\n\r\n').catch(() => {});
  await raw(port, 'GET /\u00ff HTTP/1.1\r\nHost: 127.0.0.1:' + port + '\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n').catch(() => {});
  await alive('garbage');
  assert.equal(JSON.parse((await request(port, { path: '/_emulator/stats' })).body).fault, null, 'no hostile fault was installed');
  assert.ok(!cli.stderr.includes(SECRET) && !cli.stdout.includes(SECRET), 'the token was printed');
});

test('the JS API validates faults the same way', () => withEmu({}, async (emu) => {
  for (const bad of [{ redirect: 'http://x/\r\nA: b' }, { redirect: 'nope' }, { redirect: 'http://x/\u0100' }, { delayMs: 2 ** 31 },
    { hugeChunked: 2 ** 60 }, { body: 10n }, { body: { toJSON() { throw new Error('no'); } } }]) {
    assert.throws(() => emu.fault(bad), TypeError, String(Object.keys(bad)));
  }
  emu.fault({ redirect: 'http://127.0.0.1:9/ok?a=b#c', status: 307, times: 1 });
  const res = await request(emu.port);
  assert.equal(res.status, 307);
  assert.equal(res.headers.location, 'http://127.0.0.1:9/ok?a=b#c');
}));

// Captures what is written to process.stderr while `fn` runs.
async function capturingStderr(fn) {
  const original = process.stderr.write;
  let text = '';
  process.stderr.write = function (chunk) {
    text += String(chunk);
    return true;
  };
  try {
    await fn();
  } finally {
    process.stderr.write = original;
  }
  return text;
}

test('a throw in a handler becomes a 500 and one stderr line without the token; the emulator serves on', async () => {
  // Synchronous: a metadata answer that throws (with the token in its message, the worst case).
  await withEmu({}, async (emu) => {
    const answer = metadata.answer;
    let res;
    const err = await capturingStderr(async () => {
      metadata.answer = () => { throw new Error('broken answer holding ' + SECRET); };
      try {
        res = await request(emu.port, { path: '/computeMetadata/v1/instance/id' });
      } finally {
        metadata.answer = answer;
      }
    });
    assert.equal(res.status, 500);
    assert.ok(!res.body.includes(SECRET));
    const lines = err.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, err);
    assert.match(lines[0], /internal error.*GET \/computeMetadata\/v1\/instance\/id.*broken answer/);
    assert.ok(!err.includes(SECRET), 'the token reached stderr');
    assert.equal((await request(emu.port, { path: '/computeMetadata/v1/instance/id' })).status, 200);
    assert.equal((await request(emu.port)).status, 200);
  });
  // Asynchronous: the token of a command comes back in a promise; a throw while answering with it
  // must not become an unhandled rejection (which ends Node).
  const emu = await startEmulator({ tokenCommand: 'echo ' + SECRET });
  try {
    const described = Object.getOwnPropertyDescriptor(http.STATUS_CODES, '599');
    let res;
    const err = await capturingStderr(async () => {
      Object.defineProperty(http.STATUS_CODES, '599', { configurable: true, enumerable: true, get() { throw new Error('no text for 599 near ' + SECRET); } });
      try {
        emu.fault({ status: 599, times: 1 });
        res = await request(emu.port);
      } finally {
        if (described) Object.defineProperty(http.STATUS_CODES, '599', described);
        else delete http.STATUS_CODES['599'];
      }
    });
    assert.equal(res.status, 500);
    assert.ok(!res.body.includes(SECRET));
    assert.equal(err.split('\n').filter(Boolean).length, 1, err);
    assert.match(err, /internal error/);
    assert.ok(!err.includes(SECRET), 'the token reached stderr');
    assert.equal(JSON.parse((await request(emu.port)).body).access_token, SECRET);
  } finally {
    await emu.close();
  }
});

// --- 4. Real tokens never go into argv in the docs --------------------------

test('docs and help never show a real token in argv; --help warns that --token is visible to other users', () => {
  const inArgv = /--token[ =]+["']?\$\(/;
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  assert.doesNotMatch(readme, inArgv);
  const section = readme.slice(readme.indexOf('## Off-cloud: the emulator'), readme.indexOf('## Compared with other libraries'));
  assert.match(section, /```sh\nnpx yc-metadata-token emulator --token-command 'yc iam create-token'\n/);
  const bin = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'yc-metadata-token.js'), '--help'], { encoding: 'utf8' });
  assert.doesNotMatch(bin.stdout, inArgv);
  assert.match(bin.stdout, /--token-command 'yc iam create-token'/);
  const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.doesNotMatch(help.stdout, inArgv);
  assert.match(help.stdout, /--token TOKEN[\s\S]*visible\s+to\s+every\s+local\s+user/);
  for (const file of ['demo.js', 'emulator/index.d.ts', 'emulator/cli.js', 'bin/yc-metadata-token.js']) {
    assert.doesNotMatch(fs.readFileSync(path.join(ROOT, file), 'utf8'), inArgv, file);
  }
});

test('--token VALUE on the command line works but warns on stderr, without the token', async (t) => {
  const cli = startCli(['--port', '0', '--token', SECRET]);
  t.after(async () => {
    cli.child.kill('SIGTERM');
    await cli.exit;
  });
  const port = await cli.port;
  assert.equal(JSON.parse((await request(port)).body).access_token, SECRET);
  assert.match(cli.stderr, /warning: .*--token.* visible to every local user/);
  assert.ok(!cli.stderr.includes(SECRET));
});
