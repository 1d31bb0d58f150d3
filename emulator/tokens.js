'use strict';

// Real tokens for the emulator: a service-account authorized key exchanged with IAM (a JWT signed
// PS256, as `yc` and the SDKs do), or a command such as `yc iam create-token`. Either way the token
// is minted again well before it expires, lazily, when a request finds it inside the renewal window:
// no timer of ours keeps a test process alive.
//
// The token and the private key are secrets: neither reaches an error message, a log line or
// util.inspect (the key is a KeyObject, the token lives in a closure).
//
// Zero dependencies and Node 14 compatible, like the rest of the emulator.

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const { spawn } = require('child_process');

const IAM_ENDPOINT = 'https://iam.api.cloud.yandex.net/iam/v1/tokens';
// IAM checks the JWT's audience against this exact URL, wherever the request is sent.
const IAM_AUDIENCE = 'https://iam.api.cloud.yandex.net/iam/v1/tokens';
// IAM accepts a JWT that lives at most an hour.
const JWT_LIFETIME_S = 3600;
// `yc iam create-token` prints a token that lives 12 hours (IAM's maximum).
const COMMAND_TOKEN_LIFETIME_S = 12 * 3600;
// Mint again when less than this is left, or half the lifetime for short tokens: clients that
// refresh a few minutes before expiry (240 s in this package) then get the new token.
const RENEW_BEFORE_MAX_MS = 3600 * 1000;
// A failed renewal is not retried on every request of a busy client.
const MIN_RETRY_MS = 1000;
const IAM_TIMEOUT_MS = 10000;
const COMMAND_TIMEOUT_MS = 60000;
const MAX_BODY = 64 * 1024;
// `yc iam key create` writes this line above the PEM.
const KEY_ID_LINE = /^PLEASE DO NOT REMOVE THIS LINE! Yandex\.Cloud SA Key ID [^\r\n]*\r?\n/;

function optionError(message) {
  const err = new TypeError(message);
  err.code = 'ERR_INVALID_OPTION';
  return err;
}

// Reads a service-account authorized key (the JSON `yc iam key create --output key.json` writes)
// from a path or an already parsed object. Messages name fields, never their values.
function readSaKey(source) {
  let json = source;
  if (typeof source === 'string') {
    let text;
    try {
      text = fs.readFileSync(source, 'utf8');
    } catch (e) {
      throw optionError('cannot read the service-account key file: ' + e.message);
    }
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw optionError('the service-account key file is not JSON');
    }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw optionError('the service-account key must be a JSON object with id, service_account_id and private_key');
  }
  ['id', 'service_account_id', 'private_key'].forEach(function (field) {
    if (typeof json[field] !== 'string' || json[field] === '') {
      throw optionError('the service-account key has no string field "' + field + '" (is this the JSON of `yc iam key create`?)');
    }
  });
  let privateKey;
  try {
    privateKey = crypto.createPrivateKey(json.private_key.replace(KEY_ID_LINE, ''));
  } catch (e) {
    throw optionError('the private_key of the service-account key is not a PEM private key');
  }
  if (privateKey.asymmetricKeyType !== 'rsa') {
    throw optionError('the private_key of the service-account key is not an RSA key');
  }
  return { id: json.id, serviceAccountId: json.service_account_id, privateKey: privateKey };
}

function base64url(buf) {
  // Buffer's own 'base64url' needs Node 15.7.
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

// The JWT IAM exchanges for a token: PS256 (RSASSA-PSS, SHA-256, salt 32), key id in the header.
function signJwt(key, nowMs) {
  const iat = Math.floor(nowMs / 1000);
  const header = { typ: 'JWT', alg: 'PS256', kid: key.id };
  const claims = { iss: key.serviceAccountId, aud: IAM_AUDIENCE, iat: iat, exp: iat + JWT_LIFETIME_S };
  const input = base64url(JSON.stringify(header)) + '.' + base64url(JSON.stringify(claims));
  const signature = crypto.sign('sha256', Buffer.from(input), {
    key: key.privateKey,
    padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
    saltLength: 32,
  });
  return input + '.' + base64url(signature);
}

// RFC 3339 as IAM writes expiresAt: up to 9 fractional digits, which Date.parse does not promise
// to read. Returns milliseconds since the epoch, or NaN.
function parseRfc3339(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|([+-])(\d{2}):(\d{2}))$/.exec(String(text));
  if (!m) return NaN;
  const fraction = m[7] ? Number((m[7] + '00').slice(0, 3)) : 0;
  let ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), fraction);
  if (m[9]) {
    const offset = (Number(m[10]) * 60 + Number(m[11])) * 60000;
    ms -= m[9] === '+' ? offset : -offset;
  }
  return ms;
}

function postJson(url, body, timeoutMs) {
  return new Promise(function (resolve, reject) {
    let target;
    try {
      target = new URL(url);
    } catch (e) {
      reject(optionError('the IAM endpoint is not a URL'));
      return;
    }
    const client = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : null;
    if (client === null) {
      reject(optionError('the IAM endpoint must be an http: or https: URL'));
      return;
    }
    const payload = Buffer.from(JSON.stringify(body));
    // agent: false: no kept-alive socket holds the process open between exchanges.
    const req = client.request(target, {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': payload.length },
    }, function (res) {
      const parts = [];
      let size = 0;
      res.on('data', function (d) {
        size += d.length;
        if (size > MAX_BODY) req.destroy(new Error('the IAM answer is over ' + MAX_BODY + ' bytes'));
        else parts.push(d);
      });
      res.on('end', function () { resolve({ status: res.statusCode, body: Buffer.concat(parts).toString('utf8') }); });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, function () { req.destroy(new Error('no answer from IAM within ' + timeoutMs + ' ms')); });
    req.on('error', reject);
    req.end(payload);
  });
}

// A minter that exchanges the key with IAM: resolves { token, expiresAtMs }.
function saKeyMinter(key, iamEndpoint) {
  const endpoint = iamEndpoint === undefined ? IAM_ENDPOINT : iamEndpoint;
  return function mint() {
    const jwt = signJwt(key, Date.now());
    return postJson(endpoint, { jwt: jwt }, IAM_TIMEOUT_MS).then(function (res) {
      let body = null;
      try {
        body = JSON.parse(res.body);
      } catch (e) {
        // reported below
      }
      if (res.status !== 200) {
        // IAM's error message says what is wrong with the key; it carries no token.
        const detail = body && typeof body.message === 'string' ? ': ' + body.message.slice(0, 300) : '';
        throw new Error('IAM at ' + endpoint + ' answered HTTP ' + res.status + detail);
      }
      if (!body || typeof body.iamToken !== 'string' || body.iamToken === '') {
        throw new Error('IAM at ' + endpoint + ' answered without an iamToken');
      }
      const expiresAtMs = parseRfc3339(body.expiresAt);
      if (!Number.isFinite(expiresAtMs)) {
        throw new Error('IAM at ' + endpoint + ' answered with an expiresAt that is not RFC 3339');
      }
      return { token: body.iamToken, expiresAtMs: expiresAtMs };
    });
  };
}

// A minter that runs a shell command and takes the token from its standard output. Its standard
// error goes to ours (the command's own prompts and errors); its output is never shown.
function commandMinter(command, lifetimeSeconds) {
  const lifetimeMs = (lifetimeSeconds === undefined ? COMMAND_TOKEN_LIFETIME_S : lifetimeSeconds) * 1000;
  return function mint() {
    return new Promise(function (resolve, reject) {
      const started = Date.now();
      const child = spawn(command, { shell: true, stdio: ['ignore', 'pipe', 'inherit'] });
      const parts = [];
      let size = 0;
      const timer = setTimeout(function () { child.kill('SIGKILL'); }, COMMAND_TIMEOUT_MS);
      child.stdout.on('data', function (d) {
        size += d.length;
        if (size <= MAX_BODY) parts.push(d);
      });
      child.on('error', function (e) {
        clearTimeout(timer);
        reject(new Error('cannot run the token command: ' + e.message));
      });
      child.on('close', function (code, signal) {
        clearTimeout(timer);
        if (code !== 0) {
          reject(new Error('the token command ' + (signal ? 'was killed by ' + signal : 'exited with code ' + code)));
          return;
        }
        const token = Buffer.concat(parts).toString('utf8').trim();
        if (token === '' || /\s/.test(token)) {
          reject(new Error('the token command printed ' + (token === '' ? 'nothing' : 'more than one word') + ' on its standard output'));
          return;
        }
        resolve({ token: token, expiresAtMs: started + lifetimeMs });
      });
    });
  };
}

// Keeps a minted token and mints again inside the renewal window. current() resolves
// { token, expiresAtMs } with a token that has not expired: at once while one is held (renewing
// in the background inside the window), else after one shared mint. onEvent(message) hears about
// mints and failures, with fingerprints, never tokens.
function renewingSource(mint, onEvent) {
  let held = null;
  let minting = null;
  let lastFailureAt = -Infinity;
  const say = onEvent || function () {};

  function start() {
    minting = Promise.resolve().then(mint).then(function (t) {
      minting = null;
      const leftS = Math.round((t.expiresAtMs - Date.now()) / 1000);
      if (!(t.expiresAtMs > Date.now())) throw new Error('the new token has already expired (clock skew?)');
      held = { token: t.token, expiresAtMs: t.expiresAtMs, renewAtMs: renewAt(t.expiresAtMs) };
      say('new token (sha256 fingerprint ' + fingerprint(t.token) + '), expires in ' + leftS + ' s');
      return held;
    }, function (e) {
      minting = null;
      lastFailureAt = Date.now();
      say('getting a token failed: ' + e.message);
      throw e;
    });
    return minting;
  }

  function current() {
    const now = Date.now();
    if (held !== null && now < held.expiresAtMs) {
      if (now >= held.renewAtMs && minting === null && now - lastFailureAt >= MIN_RETRY_MS) {
        // The held token still serves; a failure here is reported through onEvent.
        start().catch(function () {});
      }
      return Promise.resolve({ token: held.token, expiresAtMs: held.expiresAtMs });
    }
    return minting || start();
  }

  return {
    current: current,
    get fingerprint() { return held === null ? null : fingerprint(held.token); },
    // The text with the held token replaced, for messages nobody expected to hold it.
    redact: function (text) { return held === null ? text : String(text).split(held.token).join('<token>'); },
  };
}

function renewAt(expiresAtMs) {
  const lifetime = expiresAtMs - Date.now();
  return expiresAtMs - Math.min(RENEW_BEFORE_MAX_MS, lifetime / 2);
}

function fingerprint(token) {
  return crypto.createHash('sha256').update(String(token)).digest('hex').slice(0, 8);
}

module.exports = {
  IAM_ENDPOINT: IAM_ENDPOINT,
  IAM_AUDIENCE: IAM_AUDIENCE,
  readSaKey: readSaKey,
  signJwt: signJwt,
  parseRfc3339: parseRfc3339,
  saKeyMinter: saKeyMinter,
  commandMinter: commandMinter,
  renewingSource: renewingSource,
  fingerprint: fingerprint,
};
