'use strict';

// The emulator as the whole metadata service with real tokens: a service-account key exchanged
// with a fake IAM on 127.0.0.1 that verifies the JWT with the public key, a token command, the
// metadata paths apps read (checked with gcp-metadata and google-auth-library as clients), the
// rate-limit preset. Nothing here leaves the loopback interface.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { spawn } = require('node:child_process');

const { startEmulator, TOKEN_PATH } = require('../emulator');
const { parseRfc3339, IAM_AUDIENCE } = require('../emulator/tokens');
const { TokenProvider } = require('..');
const { runNode } = require('./helpers');

const CLI = path.join(__dirname, '..', 'emulator', 'cli.js');
const GOOGLE = { 'Metadata-Flavor': 'Google' };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function get(address, pathname, headers) {
  return new Promise((resolve, reject) => {
    const [host, port] = address.split(':');
    const req = http.get({ host, port: Number(port), path: pathname, headers: headers || GOOGLE, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ycmt-emu-'));
}

// A service-account authorized key as `yc iam key create` writes it, RSA made here.
function makeSaKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const id = 'aje' + crypto.randomBytes(8).toString('hex');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const json = {
    id,
    service_account_id: 'ajesa' + crypto.randomBytes(6).toString('hex'),
    created_at: new Date().toISOString(),
    key_algorithm: 'RSA_2048',
    public_key: publicKey.export({ type: 'spki', format: 'pem' }),
    private_key: 'PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <' + id + '>\n' + pem,
  };
  return { json, publicKey, pem };
}

// IAM's expiresAt: RFC 3339 with nanoseconds.
function rfc3339Nanos(ms) {
  return new Date(ms).toISOString().replace('Z', '123456Z');
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
}

/**
 * A fake IAM token endpoint: accepts a JWT only when its PS256 signature verifies with `publicKey`
 * and its header and claims are what IAM wants; hands out a new token each time.
 */
async function fakeIam(key, lifetimeSeconds) {
  const issued = [];
  const expiry = new Map();
  const rejected = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      const reason = check(req, text);
      if (reason !== null) {
        rejected.push(reason);
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 16, message: 'JWT rejected: ' + reason }));
        return;
      }
      const token = 't1.iam-' + crypto.randomBytes(16).toString('hex');
      const expiresAt = Date.now() + lifetimeSeconds * 1000;
      issued.push(token);
      expiry.set(token, expiresAt);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ iamToken: token, expiresAt: rfc3339Nanos(expiresAt) }));
    });
  });
  function check(req, text) {
    if (req.method !== 'POST' || req.url !== '/iam/v1/tokens') return 'wrong method or path';
    let jwt;
    try {
      jwt = JSON.parse(text).jwt;
    } catch (e) {
      return 'body is not JSON';
    }
    const parts = String(jwt).split('.');
    if (parts.length !== 3) return 'not a JWT';
    const header = b64urlJson(parts[0]);
    const claims = b64urlJson(parts[1]);
    if (header.typ !== 'JWT' || header.alg !== 'PS256' || header.kid !== key.json.id) return 'header ' + JSON.stringify(header);
    const now = Date.now() / 1000;
    if (claims.iss !== key.json.service_account_id || claims.aud !== IAM_AUDIENCE) return 'iss or aud';
    if (!(Math.abs(claims.iat - now) < 60) || !(claims.exp > now) || claims.exp - claims.iat > 3600) return 'iat or exp';
    const ok = crypto.verify('sha256', Buffer.from(parts[0] + '.' + parts[1]),
      { key: key.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
      Buffer.from(parts[2].replace(/-/g, '+').replace(/_/g, '/'), 'base64'));
    return ok ? null : 'bad signature';
  }
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: 'http://127.0.0.1:' + server.address().port + '/iam/v1/tokens',
    issued,
    expiry,
    rejected,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

test('parseRfc3339: IAM expiresAt with up to 9 fractional digits and offsets', () => {
  assert.equal(parseRfc3339('2026-11-29T12:00:00Z'), Date.UTC(2026, 10, 29, 12));
  assert.equal(parseRfc3339('2026-11-29T12:00:00.123456789Z'), Date.UTC(2026, 10, 29, 12, 0, 0, 123));
  assert.equal(parseRfc3339('2026-11-29T15:00:00.5+03:00'), Date.UTC(2026, 10, 29, 12, 0, 0, 500));
  for (const bad of ['2026-11-29', '2026-11-29T12:00:00', '2026-11-29T12:00:00.1234567890Z', 42, null]) {
    assert.ok(Number.isNaN(parseRfc3339(bad)), String(bad));
  }
});

test('--sa-key: the emulator exchanges a signed JWT with IAM and serves the token with its expires_in', async (t) => {
  const key = makeSaKey();
  const iam = await fakeIam(key, 43200);
  t.after(() => iam.close());
  const emu = await startEmulator({ saKey: key.json, iamEndpoint: iam.url });
  t.after(() => emu.close());
  assert.deepEqual(iam.rejected, []);
  assert.equal(iam.issued.length, 1, 'one exchange before the first request');
  const res = await get(emu.address, TOKEN_PATH);
  const body = JSON.parse(res.body);
  assert.equal(body.access_token, iam.issued[0]);
  assert.ok(body.expires_in >= 43190 && body.expires_in <= 43200, String(body.expires_in));
  // Through this package's client too.
  const got = await new TokenProvider({ host: emu.address }).getToken();
  assert.equal(got.token, iam.issued[0]);
  assert.equal(iam.issued.length, 1);
  // Neither the token nor the key in what the emulator shows.
  const shown = util.inspect(emu, { showHidden: true, depth: 8 }) + JSON.stringify(emu.stats());
  assert.ok(!shown.includes(iam.issued[0]) && !shown.includes(key.pem.split('\n')[1]));
});

test('--sa-key: the fake IAM refuses a JWT signed by another key (the check above can fail)', async (t) => {
  const key = makeSaKey();
  const other = makeSaKey();
  const iam = await fakeIam(key, 3600);
  t.after(() => iam.close());
  const forged = Object.assign({}, other.json, { id: key.json.id, service_account_id: key.json.service_account_id });
  await assert.rejects(startEmulator({ saKey: forged, iamEndpoint: iam.url }), (err) => {
    assert.match(err.message, /HTTP 401: JWT rejected: bad signature/);
    return true;
  });
  assert.deepEqual(iam.rejected, ['bad signature']);
});

test('--sa-key: short tokens are exchanged again before they expire; no request gets an expired one', async (t) => {
  const key = makeSaKey();
  const iam = await fakeIam(key, 3);
  t.after(() => iam.close());
  const emu = await startEmulator({ saKey: key.json, iamEndpoint: iam.url });
  t.after(() => emu.close());
  const provider = new TokenProvider({ host: emu.address });
  const seen = [];
  const deadline = Date.now() + 7000;
  while (Date.now() < deadline) {
    const body = JSON.parse((await get(emu.address, TOKEN_PATH)).body);
    seen.push(body.access_token);
    assert.ok(iam.expiry.get(body.access_token) > Date.now(), 'the emulator served an expired token');
    assert.ok(body.expires_in >= 0 && body.expires_in <= 3, 'expires_in ' + body.expires_in);
    const p = await provider.getToken();
    assert.ok(iam.expiry.get(p.token) > Date.now(), 'the provider returned an expired token');
    await sleep(100);
  }
  // 3-second tokens over 7 s, renewed in the last half of each: at least 3 exchanges, in order.
  assert.ok(iam.issued.length >= 3, iam.issued.length + ' exchanges');
  const order = seen.map((s) => iam.issued.indexOf(s));
  assert.ok(order.every((n, i) => n >= 0 && (i === 0 || n >= order[i - 1])), JSON.stringify(order));
  assert.deepEqual(iam.rejected, []);
});

test('--sa-key: bad keys are typed errors that name fields, never values', async () => {
  const key = makeSaKey();
  const cases = [
    [{ id: 'x' }, /no string field "service_account_id"/],
    [Object.assign({}, key.json, { private_key: 'not a pem' }), /not a PEM private key/],
    ['/nonexistent/key.json', /cannot read the service-account key file/],
    [[1], /JSON object/],
  ];
  for (const [saKey, message] of cases) {
    assert.throws(() => startEmulator({ saKey, iamEndpoint: 'http://127.0.0.1:9/' }), (err) => {
      assert.equal(err.code, 'ERR_INVALID_OPTION');
      assert.match(err.message, message);
      assert.ok(!err.message.includes('PRIVATE KEY'));
      return true;
    });
  }
  assert.throws(() => startEmulator({ saKey: key.json, token: 'x' }), { code: 'ERR_INVALID_OPTION' });
  assert.throws(() => startEmulator({ iamEndpoint: 'http://127.0.0.1:9/' }), { code: 'ERR_INVALID_OPTION' });
});

test('--token-command: runs the command, serves what it prints, runs it again before the lifetime runs out', async (t) => {
  const dir = tmpdir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const counter = path.join(dir, 'n');
  const script = path.join(dir, 'token.js');
  fs.writeFileSync(script, [
    "const fs = require('fs')",
    'const file = ' + JSON.stringify(counter),
    "const n = (fs.existsSync(file) ? Number(fs.readFileSync(file, 'utf8')) : 0) + 1",
    'fs.writeFileSync(file, String(n))',
    "console.log('cmd-token-' + n)",
  ].join('\n'));
  const command = JSON.stringify(process.execPath) + ' ' + JSON.stringify(script);
  const emu = await startEmulator({ tokenCommand: command, expiresIn: 2 });
  t.after(() => emu.close());
  let body = JSON.parse((await get(emu.address, TOKEN_PATH)).body);
  assert.equal(body.access_token, 'cmd-token-1');
  assert.ok(body.expires_in <= 2);
  await sleep(1200); // inside the renewal window (the last half of 2 s)
  assert.equal(JSON.parse((await get(emu.address, TOKEN_PATH)).body).access_token, 'cmd-token-1');
  await sleep(500);
  body = JSON.parse((await get(emu.address, TOKEN_PATH)).body);
  assert.equal(body.access_token, 'cmd-token-2');
  assert.equal(fs.readFileSync(counter, 'utf8'), '2');

  await assert.rejects(startEmulator({ tokenCommand: 'exit 3' }), /token command exited with code 3/);
  await assert.rejects(startEmulator({ tokenCommand: 'echo two words' }), /more than one word/);
  assert.throws(() => startEmulator({ tokenCommand: ' ' }), { code: 'ERR_INVALID_OPTION' });
});

test('metadata paths: listings, leaves, recursive, alt; Metadata-Flavor on every answer; --metadata overrides', async (t) => {
  const emu = await startEmulator({
    metadata: { instance: { id: 'fhm123', attributes: { 'ssh-keys': 'user:key' } }, project: { 'project-id': 'b1gfolder' } },
  });
  t.after(() => emu.close());
  const paths = {
    '/computeMetadata/v1/instance': 'attributes/\nhostname\nid\nname\nservice-accounts/\nvendor/\nzone\n',
    '/computeMetadata/v1/instance/': 'attributes/\nhostname\nid\nname\nservice-accounts/\nvendor/\nzone\n',
    '/computeMetadata/v1/instance/id': 'fhm123',
    '/computeMetadata/v1/instance/id?alt=json': '"fhm123"',
    '/computeMetadata/v1/instance/id?alt=text': 'fhm123',
    '/computeMetadata/v1/instance/zone': 'projects/emulator-folder/zones/ru-central1-a',
    '/computeMetadata/v1/instance/hostname': 'emulator.ru-central1.internal',
    '/computeMetadata/v1/instance/service-accounts/default/email': 'emulator@emulator-folder.iam.gserviceaccount.com',
    '/computeMetadata/v1/instance/service-accounts/default/': 'aliases\nemail\nscopes\ntoken\n',
    '/computeMetadata/v1/project/project-id': 'b1gfolder',
    '/computeMetadata/v1/instance/attributes/ssh-keys': 'user:key',
  };
  for (const [p, expected] of Object.entries(paths)) {
    const res = await get(emu.address, p);
    assert.equal(res.status, 200, p);
    assert.equal(res.headers['metadata-flavor'], 'Google', p);
    assert.equal(res.body, expected, p);
  }
  const recursive = await get(emu.address, '/computeMetadata/v1/instance/?recursive=true');
  assert.equal(recursive.headers['content-type'], 'application/json');
  const tree = JSON.parse(recursive.body);
  assert.equal(tree.id, 'fhm123');
  assert.deepEqual(tree.attributes, { 'ssh-keys': 'user:key' }, 'attribute names stay as written');
  assert.equal(tree.serviceAccounts.default.email, 'emulator@emulator-folder.iam.gserviceaccount.com');
  assert.ok(!JSON.stringify(tree).includes('access_token'), 'the token is not part of the tree');
  const text = await get(emu.address, '/computeMetadata/v1/project/?recursive=true&alt=text');
  assert.match(text.body, /^project-id b1gfolder$/m);
  for (const [p, status] of [['/computeMetadata/v1/instance/nope', 404], ['/computeMetadata/v1/instance/id?alt=xml', 400]]) {
    const res = await get(emu.address, p);
    assert.equal(res.status, status, p);
    assert.equal(res.headers['metadata-flavor'], 'Google', p);
  }
  assert.equal((await get(emu.address, '/computeMetadata/v1/instance/id', {})).status, 403);
  assert.equal(emu.requests, 0, 'only token requests are counted');
  assert.throws(() => startEmulator({ metadata: { instance: { 'a/b': 1 } } }), { code: 'ERR_INVALID_OPTION' });
  assert.throws(() => startEmulator({ metadata: 'x' }), { code: 'ERR_INVALID_OPTION' });
});

test('rate-limit preset: 429 beyond 60 requests a second on any metadata path, then service again', async (t) => {
  const emu = await startEmulator({ token: 'rl' });
  t.after(() => emu.close());
  emu.fault('rate-limit');
  const statuses = [];
  const started = Date.now();
  for (let i = 0; i < 80; i++) {
    statuses.push((await get(emu.address, i % 2 ? TOKEN_PATH : '/computeMetadata/v1/instance/id')).status);
  }
  const elapsed = Date.now() - started;
  const served = statuses.filter((s) => s === 200).length;
  if (elapsed < 1000) {
    assert.equal(served, 60, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 429).length, 20);
  } else {
    t.diagnostic('80 requests took ' + elapsed + ' ms: only the bound is checked');
    assert.ok(statuses.includes(429) || elapsed > 1300);
  }
  await sleep(1000);
  assert.equal((await get(emu.address, TOKEN_PATH)).status, 200);
  // This package retries a 429 within its deadline.
  const t0 = await new TokenProvider({ host: emu.address }).getToken();
  assert.equal(t0.token, 'rl');
  assert.throws(() => emu.fault({ rateLimit: 60, times: 2 }), TypeError);
  assert.throws(() => emu.fault({ rateLimit: 0 }), TypeError);
});

// gcp-metadata and google-auth-library in a fresh process, pointed at the emulator by
// GCE_METADATA_HOST (without it they would probe 169.254.169.254 and metadata.google.internal),
// with a HOME and gcloud config of their own so that no local credentials are found first.
function googleClients(emu, home) {
  const code = `
    const crypto = require('crypto')
    const gcpMetadata = require('gcp-metadata')
    const { GoogleAuth } = require('google-auth-library')
    const fp = (t) => crypto.createHash('sha256').update(String(t)).digest('hex').slice(0, 8)
    ;(async () => {
      const out = { available: await gcpMetadata.isAvailable() }
      if (out.available) {
        out.id = await gcpMetadata.instance('id')
        out.email = await gcpMetadata.instance('service-accounts/default/email')
        out.projectId = await gcpMetadata.project('project-id')
        const auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] })
        const client = await auth.getClient()
        out.client = client.constructor.name
        out.tokenFingerprint = fp((await client.getAccessToken()).token)
        out.authProjectId = await auth.getProjectId()
      }
      console.log(JSON.stringify(out))
    })().catch((e) => { console.error(e && e.stack || e); process.exit(1) })`;
  return runNode(code, {
    GCE_METADATA_HOST: emu.address,
    GCE_METADATA_IP: emu.address,
    HOME: home,
    CLOUDSDK_CONFIG: path.join(home, 'gcloud'),
    GOOGLE_APPLICATION_CREDENTIALS: '',
    GOOGLE_CLOUD_PROJECT: '',
    GCLOUD_PROJECT: '',
    METADATA_SERVER_DETECTION: '',
    PATH: path.dirname(process.execPath),
  }, 30000);
}

test('gcp-metadata isAvailable() and google-auth-library getClient() against the emulator', async (t) => {
  const home = tmpdir();
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  const emu = await startEmulator({ token: 'google-client-token', metadata: { project: { 'project-id': 'b1gproj' } } });
  t.after(() => emu.close());
  const r = await googleClients(emu, home);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out, {
    available: true,
    id: 'emulator-instance-id',
    email: 'emulator@emulator-folder.iam.gserviceaccount.com',
    projectId: 'b1gproj',
    client: 'Compute',
    tokenFingerprint: emu.tokenFingerprint,
    authProjectId: 'b1gproj',
  });
  assert.ok(emu.requests >= 1);
  // Every request reached the emulator and carried the header.
  assert.ok(emu.log.every((e) => e.headers['metadata-flavor'] === 'Google'));
});

test('without the instance/ tree, gcp-metadata finds no metadata service (the check above can fail)', async (t) => {
  const home = tmpdir();
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  const emu = await startEmulator({ metadata: { instance: null } });
  t.after(() => emu.close());
  const r = await googleClients(emu, home);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { available: false });
});

function runCli(args) {
  const child = spawn(process.execPath, [CLI].concat(args), { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '', child };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  out.exit = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  return out;
}

test('CLI --sa-key FILE --iam-endpoint: real tokens, the YDB lines, never the token or the key on screen', async (t) => {
  const dir = tmpdir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const key = makeSaKey();
  const keyFile = path.join(dir, 'key.json');
  fs.writeFileSync(keyFile, JSON.stringify(key.json));
  const iam = await fakeIam(key, 43200);
  t.after(() => iam.close());
  const cli = runCli(['--port', '0', '--sa-key', keyFile, '--iam-endpoint', iam.url]);
  t.after(() => cli.child.kill('SIGTERM'));
  const address = await new Promise((resolve, reject) => {
    cli.child.stdout.on('data', () => {
      const m = /^export YDB_METADATA_CREDENTIALS_ENDPOINT=http:\/\/(127\.0\.0\.1:\d+)\/computeMetadata\/v1\/instance\/service-accounts\/default\/token$/m.exec(cli.stdout);
      if (m) resolve(m[1]);
    });
    cli.exit.then((code) => reject(new Error('CLI exited ' + code + ': ' + cli.stderr)));
  });
  assert.match(cli.stdout, /^export YDB_METADATA_CREDENTIALS=1$/m);
  assert.match(cli.stdout, new RegExp('^export YC_METADATA_ADDR=' + address + '$', 'm'));
  const body = JSON.parse((await get(address, TOKEN_PATH)).body);
  assert.equal(body.access_token, iam.issued[0]);
  cli.child.kill('SIGTERM');
  assert.equal(await cli.exit, 0);
  const screen = cli.stdout + cli.stderr;
  assert.match(cli.stderr, /new token \(sha256 fingerprint [0-9a-f]{8}\), expires in \d+ s/);
  assert.ok(!screen.includes(iam.issued[0]), 'the token was printed');
  for (const line of key.pem.split('\n').slice(1, -2)) assert.ok(!screen.includes(line), 'the key was printed');
});

test('CLI: a key IAM refuses exits 1 with IAM\'s reason; bad combinations exit 2', async (t) => {
  const dir = tmpdir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const key = makeSaKey();
  const iam = await fakeIam(makeSaKey(), 3600);
  t.after(() => iam.close());
  const keyFile = path.join(dir, 'key.json');
  fs.writeFileSync(keyFile, JSON.stringify(key.json));
  const refused = runCli(['--port', '0', '--sa-key', keyFile, '--iam-endpoint', iam.url]);
  assert.equal(await refused.exit, 1);
  assert.match(refused.stderr, /cannot get a token: IAM at .* answered HTTP 401/);
  assert.equal(refused.stdout, '');
  const bad = [['--sa-key', keyFile, '--token', 'x'], ['--iam-endpoint', iam.url], ['--sa-key', '/nonexistent/key.json'],
    ['--token-command', ''], ['--metadata', '/nonexistent/m.json'], ['--fault', 'rate-limits'], ['--sa-key', keyFile, '--countdown']];
  await Promise.all(bad.map(async (args) => {
    const r = runCli(['--port', '0'].concat(args));
    assert.equal(await r.exit, 2, args.join(' ') + ': ' + r.stderr);
    assert.equal(r.stdout, '');
  }));
});
