'use strict';

// A GCE-compatible instance metadata service for laptops and tests: the
// service-account token (a fake one, a given one, or real ones from a key or a
// command: tokens.js), the metadata paths applications read (metadata.js), and
// faults on purpose. It is the fixture of the package's tests, so it must never
// leak sockets or timers: close() tears down everything, including connections
// that a fault left hanging.
//
// With a real token (--sa-key, --token-command, --token) it is a credential server on a fixed port
// of a laptop, and acts like one: it answers only requests whose Host is a loopback name or its own
// address (a page after DNS rebinding sends its own name), refuses anything a browser marks as a
// page's (Origin, Sec-Fetch-Site), never sends CORS headers, wants Metadata-Flavor: Google and a
// JSON body on its control API (which a page cannot send without a preflight), validates faults on
// the way in, and turns any throw while answering into a 500 and one line on stderr: no request can
// end it.
//
// Zero dependencies and Node 14 compatible on purpose: it also runs on users'
// laptops through the CLI.

const http = require('http');
const crypto = require('crypto');
const net = require('net');
const os = require('os');
const tokens = require('./tokens');
const metadata = require('./metadata');

const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token';
const CONTROL_PREFIX = '/_emulator/';
const MAX_LOG_ENTRIES = 1000;
const MAX_CONTROL_BODY = 1024 * 1024;
const HUGE_CHUNK = 64 * 1024;
// setTimeout's limit: a longer delay would fire at once (and warn).
const MAX_TIMER_MS = 2147483647;
// The names a request may carry in its Host header besides the bound address (with the bound port,
// or none). Exact names: `localhost.` (trailing dot) goes to the DNS server, which may answer with
// anything, so it is not loopback here (this package's client drops that dot before sending).
const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '[::1]'];
const PROG = 'yc-metadata-token emulator';

// Every fault kind and the type of value it takes. `delayMs` may be combined
// with any other kind (slow *and* broken); `status` may go with `redirect`.
const FAULT_KINDS = {
  status: 'status',
  redirect: 'url',
  delayMs: 'ms',
  hang: 'flag',
  hangAfterHeaders: 'flag',
  resetMidBody: 'flag',
  truncate: 'flag',
  garbage: 'flag',
  body: 'any',
  hugeBytes: 'size',
  hugeChunked: 'size',
  dribbleMs: 'ms',
  dropConnection: 'flag',
  rateLimit: 'rate',
};

// Named faults: `--fault rate-limit` is the metadata service's own limit, 429 beyond 60 requests a
// second (all metadata paths together).
const FAULT_PRESETS = {
  'rate-limit': { rateLimit: 60 },
};
const RATE_WINDOW_MS = 1000;

function randomToken() {
  return 'emulator-' + crypto.randomBytes(16).toString('hex');
}

const fingerprint = tokens.fingerprint;

function isNonNegativeInteger(v) {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function checkExpiresIn(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new TypeError('expiresIn must be a finite number of seconds, got ' + JSON.stringify(v));
  }
}

function checkToken(v) {
  if (typeof v !== 'string') {
    throw new TypeError('token must be a string, got ' + typeof v);
  }
}

// Validates a fault spec and returns a private copy of it (or null). Throws a
// TypeError with a message fit to show a human (CLI, control API).
function normalizeFault(spec) {
  if (spec === null || spec === undefined) return null;
  if (typeof spec === 'string' && Object.prototype.hasOwnProperty.call(FAULT_PRESETS, spec)) {
    return normalizeFault(FAULT_PRESETS[spec]);
  }
  if (typeof spec !== 'object' || Array.isArray(spec)) {
    throw new TypeError('fault must be an object, a preset name (' + Object.keys(FAULT_PRESETS).join(', ') + ') or null');
  }
  const kinds = [];
  Object.keys(spec).forEach(function (key) {
    if (key === 'times') {
      if (!isNonNegativeInteger(spec.times)) {
        throw new TypeError('fault.times must be a non-negative integer');
      }
      return;
    }
    // Own keys only: JSON.parse makes "__proto__" an ordinary key, which must not find Object.prototype.
    const type = Object.prototype.hasOwnProperty.call(FAULT_KINDS, key) ? FAULT_KINDS[key] : null;
    if (!type) {
      throw new TypeError('unknown fault key "' + key + '"; known: times, ' + Object.keys(FAULT_KINDS).join(', '));
    }
    const v = spec[key];
    const bad = function (what) {
      throw new TypeError('fault.' + key + ' must be ' + what + ', got ' + describe(v));
    };
    if (type === 'flag' && v !== true) bad('true');
    if (type === 'status' && !(Number.isInteger(v) && v >= 200 && v <= 599)) bad('an HTTP status code 200-599');
    // It becomes a Location header: a CR or LF would split the answer, and Node throws on it.
    if (type === 'url' && !isHeaderSafeUrl(v)) bad('an absolute URL of visible ASCII characters (no spaces, CR or LF)');
    if (type === 'ms' && !(typeof v === 'number' && v >= 0 && v <= MAX_TIMER_MS)) bad('a number of milliseconds from 0 to ' + MAX_TIMER_MS);
    if (type === 'size' && !(isNonNegativeInteger(v) && v <= Number.MAX_SAFE_INTEGER)) bad('a non-negative integer byte count');
    if (type === 'rate' && !(Number.isInteger(v) && v > 0)) bad('a positive integer of requests per second');
    if (type === 'any' && jsonText(v) === null) bad('a JSON value or string');
    kinds.push(key);
  });

  // Which kind decides the response; delayMs only postpones it.
  let main = kinds.filter(function (k) { return k !== 'delayMs' && k !== 'status'; });
  if (kinds.indexOf('status') !== -1 && main.length === 0) main = ['status'];
  if (kinds.indexOf('status') !== -1 && main[0] !== 'status' && main[0] !== 'redirect') {
    throw new TypeError('fault.status can only be combined with redirect (and delayMs)');
  }
  if (main.length > 1) {
    throw new TypeError('fault has several kinds (' + main.join(', ') + '); use one (delayMs may be added to any)');
  }
  if (main.length === 0 && kinds.indexOf('delayMs') === -1) {
    throw new TypeError('fault needs one of: ' + Object.keys(FAULT_KINDS).join(', '));
  }
  if (main[0] === 'rateLimit' && (spec.times !== undefined || spec.delayMs !== undefined)) {
    throw new TypeError('fault.rateLimit stays until cleared: it takes no times or delayMs');
  }
  if (main[0] === 'redirect' && spec.status !== undefined && (spec.status < 300 || spec.status > 399)) {
    throw new TypeError('fault.status must be 3xx when combined with redirect');
  }

  const copy = {};
  Object.keys(spec).forEach(function (k) { copy[k] = spec[k]; });
  // The body is serialized now, so that answering with it cannot fail later.
  const bodyText = spec.body === undefined ? undefined : jsonText(spec.body);
  return { spec: copy, kind: main[0] || 'normal', remaining: spec.times, bodyText: bodyText };
}

// The text a `body` fault sends: a string as it is, anything else as JSON; null when it has none.
function jsonText(v) {
  if (typeof v === 'string') return v;
  try {
    const text = JSON.stringify(v);
    return typeof text === 'string' ? text : null;
  } catch (e) {
    return null;
  }
}

function isHeaderSafeUrl(v) {
  if (typeof v !== 'string' || !/^[\x21-\x7e]+$/.test(v)) return false;
  try {
    new URL(v); // eslint-disable-line no-new
    return true;
  } catch (e) {
    return false;
  }
}

// A value for an error message: short, and never a throw of its own.
function describe(v) {
  const text = jsonText(v);
  if (text === null) return typeof v;
  return text.length > 80 ? text.slice(0, 80) + '...' : text;
}

// Host header values and --allow-host entries: `name[:port]` with a DNS name or IPv4 address, or a
// bracketed IPv6 address. Returns { name, port } with the name lower-cased (IPv6 compressed, in
// brackets) and port null when absent, or null when `value` is not of that shape.
function parseHost(value) {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m) return null;
  const name = canonicalName(m[1]);
  const port = m[2] === undefined ? null : Number(m[2]);
  if (name === null || (port !== null && (port < 1 || port > 65535))) return null;
  return { name: name, port: port };
}

function canonicalName(name) {
  if (name.charAt(0) !== '[') return name.toLowerCase();
  const inner = name.slice(1, -1);
  if (!net.isIPv6(inner)) return null;
  try {
    return new URL('http://' + name + '/').hostname;
  } catch (e) {
    return null;
  }
}

// The name of the bound address as a Host header carries it.
function boundName(host) {
  if (typeof host !== 'string') return String(host);
  if (host.indexOf(':') === -1) return host.toLowerCase();
  return canonicalName('[' + host + ']') || '[' + host.toLowerCase() + ']';
}

// This machine's addresses, as Host names: what a container or another machine dials when the
// emulator listens on all of them (0.0.0.0 or ::).
function ownAddresses() {
  const out = [];
  const ifaces = os.networkInterfaces();
  Object.keys(ifaces).forEach(function (k) {
    (ifaces[k] || []).forEach(function (a) {
      const v6 = a.family === 'IPv6' || a.family === 6;
      out.push(v6 ? canonicalName('[' + a.address + ']') : a.address);
    });
  });
  return out;
}

// The allowHosts option: [{ name, port }], port null for "the bound port". Throws ERR_INVALID_OPTION.
function allowedHosts(list) {
  if (list === undefined) return [];
  const bad = function (why) {
    throw Object.assign(new TypeError('allowHosts ' + why), { code: 'ERR_INVALID_OPTION' });
  };
  if (!Array.isArray(list)) bad('must be an array of host names (name or name:port)');
  return list.map(function (entry) {
    const h = typeof entry === 'string' ? parseHost(entry) : null;
    if (h === null) bad('entries must be host names or addresses with an optional port 1-65535, got ' + describe(entry));
    return h;
  });
}

function startEmulator(options) {
  const opts = options || {};
  const host = opts.host === undefined ? '127.0.0.1' : opts.host;
  const port = opts.port === undefined ? 0 : opts.port;
  const quiet = opts.quiet === undefined ? true : !!opts.quiet;
  const countdown = !!opts.countdown;

  const say = quiet ? function () {} : function (message) { process.stderr.write(message + '\n'); };
  const extraHosts = allowedHosts(opts.allowHosts);
  // A real token source (a service-account key exchanged with IAM, or a command), or null for the
  // static token below.
  let source = tokenSource(opts, say);
  let token = opts.token === undefined ? randomToken() : opts.token;
  let expiresIn = opts.expiresIn === undefined ? 3600 : opts.expiresIn;
  checkToken(token);
  checkExpiresIn(expiresIn);
  let tokenSetAt = Date.now();
  const tree = metadata.buildTree(opts.metadata, { folderId: opts.folderId, cloudId: opts.cloudId });
  // When the metadata requests of the last second were served, for the rateLimit fault.
  const recent = [];

  let fault = null;
  let requests = 0;
  // Requests turned away by the Host / Origin rules (browsers): never counted in `requests`.
  let refused = 0;
  let bytesStreamed = 0;
  const log = [];
  const sockets = new Set();
  const timers = new Set();
  let closed = false;
  let closing = null;
  let boundPort = null;
  // The bound address as a Host header names it: '127.0.0.1', '[::1]', '0.0.0.0', '[::]'.
  const bound = boundName(host);
  let address = null;
  let url = null;

  // Every handler runs guarded: a throw becomes a 500 and a line on stderr, never the end of the process.
  const server = http.createServer(function (req, res) {
    try {
      onRequest(req, res);
    } catch (e) {
      internalError(req, res, e);
    }
  });
  // Node 14 kills idle sockets after 120 s by default; a `hang` fault should
  // hang until the client or close() gives up, like a real stuck server.
  server.timeout = 0;
  server.on('connection', function (socket) {
    sockets.add(socket);
    socket.on('close', function () { sockets.delete(socket); });
  });

  // fn, with any throw turned into a 500 for this request: for callbacks that run later (timers,
  // promises, stream events), where a throw would otherwise end the process.
  function guarded(req, res, fn) {
    return function () {
      try {
        return fn.apply(this, arguments);
      } catch (e) {
        internalError(req, res, e);
        return undefined;
      }
    };
  }

  function internalError(req, res, err) {
    const what = err && typeof err === 'object' ? (err.code ? err.code + ': ' : '') + err.message : String(err);
    try {
      process.stderr.write(PROG + ': internal error answering ' + req.method + ' ' + redact(String(req.url)).slice(0, 200) +
        ': ' + redact(String(what)).replace(/[\r\n]+/g, ' ').slice(0, 300) + '\n');
    } catch (e) {
      // stderr is gone; the answer below still goes out.
    }
    try {
      if (res.headersSent) throw new Error('too late for a 500');
      sendText(res, 500, 'Internal error in the emulator: its stderr says what.\n', { Connection: 'close' });
    } catch (e) {
      req.socket.destroy();
    }
  }

  // The text without the token in it (for messages of errors nobody expected).
  function redact(text) {
    let out = text;
    if (typeof token === 'string' && token.length > 0) out = out.split(token).join('<token>');
    if (source !== null) out = source.redact(out);
    return out;
  }

  // Why the request must be refused, or null: the DNS-rebinding and browser rules, before anything
  // else on every path.
  function refusal(req) {
    const h = req.headers;
    if (h.origin !== undefined) {
      return 'Refused: the request carries Origin, so a web page sent it; the emulator answers no web page ' +
        '(nor does the real metadata service).\n';
    }
    if (h['sec-fetch-site'] !== undefined && h['sec-fetch-site'] !== 'none') {
      return 'Refused: Sec-Fetch-Site: ' + describe(h['sec-fetch-site']) + ' says a web page sent it; the emulator answers no web page.\n';
    }
    if (h.host === undefined) return 'Refused: the request has no Host header.\n';
    const parsed = parseHost(h.host);
    if (parsed !== null && hostAllowed(parsed)) return null;
    return 'Refused: Host ' + describe(h.host) + ' is not ' + LOOPBACK_HOSTS.join(', ') +
      (LOOPBACK_HOSTS.indexOf(bound) === -1 ? ' or ' + bound : '') + ' with port ' + boundPort +
      ' (or none): a name that points here may be a web page after DNS rebinding. ' +
      'Names of your own: --allow-host (allowHosts).\n';
  }

  function hostAllowed(h) {
    const matches = function (name, port) {
      return h.name === name && (h.port === null || h.port === (port === null ? boundPort : port));
    };
    if (LOOPBACK_HOSTS.some(function (n) { return matches(n, null); }) || matches(bound, null)) return true;
    if (extraHosts.some(function (e) { return matches(e.name, e.port); })) return true;
    // Listening on every address: this machine's addresses too (never a name).
    return (bound === '0.0.0.0' || bound === '[::]') && ownAddresses().some(function (a) { return matches(a, null); });
  }

  function later(ms, fn) {
    if (closed) return;
    const t = setTimeout(function () {
      timers.delete(t);
      if (!closed) fn();
    }, ms);
    timers.add(t);
  }

  function currentExpiresIn() {
    if (!countdown) return expiresIn;
    const leftMs = tokenSetAt + expiresIn * 1000 - Date.now();
    // Whole seconds rounded down, as real metadata servers truncate: rounding up would tell
    // clients a token lives up to a second longer than it does.
    return Math.max(0, Math.floor(leftMs / 1000));
  }

  function tokenBody(value, seconds) {
    return JSON.stringify({ access_token: value, expires_in: seconds, token_type: 'Bearer' });
  }

  // cb(err, body): at once for the static token; from the source otherwise, which may mint first.
  // cb must not throw (pass it through guarded()): from a promise, a throw would be an unhandled
  // rejection, which ends Node.
  function withTokenBody(cb) {
    if (source === null) {
      cb(null, tokenBody(token, currentExpiresIn()));
      return;
    }
    source.current().then(function (t) {
      // Rounded down, as real metadata servers truncate.
      cb(null, tokenBody(t.token, Math.max(0, Math.floor((t.expiresAtMs - Date.now()) / 1000))));
    }, function (err) {
      cb(err);
    });
  }

  // Whether the rateLimit fault turns this metadata request away. Only served requests count,
  // so a client that backs off gets through again.
  function rateLimited() {
    if (!fault || fault.kind !== 'rateLimit') return false;
    const now = Date.now();
    while (recent.length > 0 && recent[0] <= now - RATE_WINDOW_MS) recent.shift();
    if (recent.length >= fault.spec.rateLimit) return true;
    recent.push(now);
    return false;
  }

  function takeFault() {
    if (!fault || fault.kind === 'rateLimit') return null;
    const f = fault;
    if (f.remaining !== undefined) {
      if (f.remaining <= 0) {
        fault = null;
        return null;
      }
      f.remaining -= 1;
      if (f.remaining === 0) fault = null;
    }
    return f;
  }

  function onRequest(req, res) {
    const started = Date.now();
    const socket = req.socket;
    const ctx = { status: null, note: '' };
    log.push({ method: req.method, path: req.url, headers: Object.assign({}, req.headers), time: started });
    if (log.length > MAX_LOG_ENTRIES) log.splice(0, log.length - MAX_LOG_ENTRIES);

    // Writes to a client that went away, and a request body cut short, are expected here, never fatal.
    res.on('error', function () {});
    req.on('error', function () {});

    if (!quiet) {
      let done = false;
      const report = function () {
        if (done) return;
        done = true;
        const status = ctx.status || (res.headersSent ? res.statusCode : '-');
        // Only method, path and status: the token must never reach a log.
        process.stderr.write(new Date(started).toISOString() + ' ' + req.method + ' ' + req.url + ' ' +
          status + ' ' + (Date.now() - started) + 'ms' + (ctx.note ? ' ' + ctx.note : '') + '\n');
      };
      // 'close' also fires when the client or close() kills a pending
      // response (hang, dribble), so every request gets exactly one line.
      res.on('finish', report);
      res.on('close', report);
    }

    const refuse = refusal(req);
    if (refuse !== null) {
      req.resume();
      refused += 1;
      ctx.note = 'refused';
      sendText(res, 403, refuse);
      return;
    }

    const pathname = req.url.split('?')[0];
    if (pathname.indexOf(CONTROL_PREFIX) === 0) {
      onControl(req, res, pathname.slice(CONTROL_PREFIX.length));
      return;
    }
    req.resume();
    const isToken = pathname === TOKEN_PATH;
    if (!isToken && pathname.indexOf(metadata.PREFIX) !== 0 && pathname + '/' !== metadata.PREFIX) {
      sendText(res, 404, 'Not Found: ' + pathname + '\n');
      return;
    }

    if (isToken) requests += 1;
    if (req.method !== 'GET') {
      sendText(res, 405, 'Method Not Allowed\n', { Allow: 'GET' });
      return;
    }
    if (req.headers['x-forwarded-for'] !== undefined) {
      sendText(res, 403, 'Request denied: X-Forwarded-For header present.\n');
      return;
    }
    if (req.headers['metadata-flavor'] !== 'Google') {
      sendText(res, 403, 'Missing Metadata-Flavor:Google header.\n');
      return;
    }
    if (rateLimited()) {
      ctx.note = 'fault=rateLimit';
      sendText(res, 429, 'Too Many Requests: over ' + fault.spec.rateLimit + ' requests per second.\n');
      return;
    }
    if (!isToken) {
      const a = metadata.answer(tree, pathname === '/computeMetadata/v1' ? metadata.PREFIX : pathname,
        new URL(req.url, 'http://emulator').searchParams);
      if (a === null) sendText(res, 404, 'Not Found: ' + pathname + '\n');
      else send(res, a.status, a.type, a.body);
      return;
    }

    const f = takeFault();
    if (f) ctx.note = 'fault=' + f.kind + (f.spec.delayMs !== undefined ? '+delayMs' : '');
    const serve = function () {
      withTokenBody(guarded(req, res, function (err, body) {
        if (socket.destroyed) return;
        if (err) {
          // The source's message names what failed (IAM's status, the command's exit), never a token.
          sendText(res, 503, 'No token: ' + err.message + '\n');
          return;
        }
        serveToken(req, res, socket, f, ctx, body);
      }));
    };
    if (f && f.spec.delayMs !== undefined) {
      later(f.spec.delayMs, guarded(req, res, function () {
        if (!socket.destroyed) serve();
      }));
    } else {
      serve();
    }
  }

  function serveToken(req, res, socket, f, ctx, body) {
    const kind = f ? f.kind : 'normal';
    const spec = f ? f.spec : {};
    const bodyBytes = Buffer.from(body);

    switch (kind) {
      case 'normal':
        sendJson(res, 200, body);
        return;
      case 'status':
      case 'redirect': {
        const status = spec.status !== undefined ? spec.status : 302;
        const headers = {};
        if (status >= 300 && status <= 399) headers.Location = spec.redirect || url;
        sendText(res, status, status + ' ' + (http.STATUS_CODES[status] || 'Status') + '\n', headers);
        return;
      }
      case 'hang':
        ctx.status = 'hang';
        return;
      case 'hangAfterHeaders':
        res.writeHead(200, jsonHeaders(bodyBytes.length));
        res.flushHeaders();
        return;
      case 'resetMidBody': {
        res.writeHead(200, jsonHeaders(bodyBytes.length));
        res.write(bodyBytes.slice(0, Math.floor(bodyBytes.length / 2)), guarded(req, res, function () {
          ctx.status = '200+reset';
          // A real RST, not a FIN, where Node can do it (>= 16.17 / 18.3).
          if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
          else socket.destroy();
        }));
        return;
      }
      case 'truncate':
        sendJson(res, 200, bodyBytes.slice(0, Math.floor(bodyBytes.length / 2)));
        return;
      case 'garbage':
        sendJson(res, 200, 'not json{{');
        return;
      case 'body':
        sendJson(res, 200, f.bodyText);
        return;
      case 'hugeBytes':
        streamHuge(req, res, socket, spec.hugeBytes, false);
        return;
      case 'hugeChunked':
        streamHuge(req, res, socket, spec.hugeChunked, true);
        return;
      case 'dribbleMs':
        ctx.status = '200';
        dribble(req, res, socket, bodyBytes, spec.dribbleMs);
        return;
      case 'dropConnection':
        ctx.status = 'drop';
        socket.destroy();
        return;
      default:
        throw new Error('unreachable fault kind ' + kind);
    }
  }

  // Streams `total` bytes of 'a', honouring backpressure so a slow client
  // cannot make us buffer gigabytes, and stopping when the client leaves.
  function streamHuge(req, res, socket, total, chunked) {
    const headers = { 'Content-Type': 'application/json', 'Metadata-Flavor': 'Google' };
    if (!chunked) headers['Content-Length'] = total;
    res.writeHead(200, headers);
    const chunk = Buffer.alloc(HUGE_CHUNK, 'a');
    let left = total;
    let stopped = false;
    res.on('close', function () { stopped = true; });
    const pump = guarded(req, res, function () {
      while (!stopped && !closed && left > 0) {
        const n = Math.min(left, HUGE_CHUNK);
        left -= n;
        bytesStreamed += n;
        if (!res.write(n === HUGE_CHUNK ? chunk : chunk.slice(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      if (!stopped && !closed) res.end();
    });
    pump();
  }

  // Writes the whole raw response (status line and headers included) one
  // byte at a time, bypassing ServerResponse, to mimic a crawling server.
  function dribble(req, res, socket, bodyBytes, ms) {
    const head = 'HTTP/1.1 200 OK\r\n' +
      'Content-Type: application/json\r\n' +
      'Metadata-Flavor: Google\r\n' +
      'Content-Length: ' + bodyBytes.length + '\r\n' +
      'Connection: close\r\n\r\n';
    const raw = Buffer.concat([Buffer.from(head, 'latin1'), bodyBytes]);
    let i = 0;
    const step = guarded(req, res, function () {
      if (socket.destroyed) return;
      socket.write(raw.slice(i, i + 1));
      i += 1;
      if (i < raw.length) later(ms, step);
      else socket.end();
    });
    step();
  }

  // The control API changes what a token request gets. A web page cannot send Metadata-Flavor or a
  // JSON Content-Type without a CORS preflight, which the emulator never grants: these two headers
  // are what keeps it from CSRF (besides the Host and Origin rules every path has).
  function onControl(req, res, name) {
    const route = req.method + ' ' + name;
    if (['GET stats', 'POST fault', 'POST token', 'POST reset'].indexOf(route) === -1) {
      req.resume();
      const known = ['stats', 'fault', 'token', 'reset'].indexOf(name) !== -1;
      sendText(res, known ? 405 : 404, known ? 'Method Not Allowed\n' : 'Unknown control endpoint\n');
      return;
    }
    if (req.headers['x-forwarded-for'] !== undefined) {
      req.resume();
      sendText(res, 403, 'Request denied: X-Forwarded-For header present.\n');
      return;
    }
    if (req.headers['metadata-flavor'] !== 'Google') {
      req.resume();
      sendText(res, 403, 'The control API needs the header Metadata-Flavor: Google.\n');
      return;
    }
    if (route === 'GET stats') {
      req.resume();
      sendJson(res, 200, JSON.stringify(stats()));
      return;
    }
    if (!isJsonType(req.headers['content-type'])) {
      req.resume();
      sendText(res, 415, 'The control API takes a JSON body with Content-Type: application/json, got ' +
        (req.headers['content-type'] === undefined ? 'none' : describe(req.headers['content-type'])) + '.\n');
      return;
    }
    readBody(req, guarded(req, res, function (err, text) {
      if (err) {
        sendText(res, 413, err.message + '\n', { Connection: 'close' });
        return;
      }
      try {
        let value = null;
        if (text.trim() !== '') {
          try {
            value = JSON.parse(text);
          } catch (e) {
            throw new TypeError('body is not valid JSON: ' + e.message);
          }
        }
        if (name === 'fault') {
          emu.fault(value);
        } else if (name === 'token') {
          if (!value || typeof value !== 'object') throw new TypeError('body must be {"token": "...", "expires_in": N}');
          emu.setToken(value.token, value.expires_in);
        } else {
          emu.reset();
        }
      } catch (e) {
        sendText(res, 400, e.message + '\n');
        return;
      }
      res.writeHead(204);
      res.end();
    }));
  }

  // cb(err, text) once the whole body has arrived; over MAX_CONTROL_BODY it is read to its end and
  // dropped (answering before would reset a client still sending), then cb gets an error.
  function readBody(req, cb) {
    const parts = [];
    let size = 0;
    req.on('data', function (d) {
      size += d.length;
      if (size <= MAX_CONTROL_BODY) parts.push(d);
      else parts.length = 0;
    });
    req.on('end', function () {
      if (size > MAX_CONTROL_BODY) cb(new Error('control request body too large (over ' + MAX_CONTROL_BODY + ' bytes)'));
      else cb(null, Buffer.concat(parts).toString('utf8'));
    });
  }

  function stats() {
    let f = null;
    if (fault) {
      f = Object.assign({}, fault.spec);
      if (fault.remaining !== undefined) f.times = fault.remaining;
    }
    return { requests: requests, refused: refused, token_fingerprint: currentFingerprint(), fault: f, streamed_bytes: bytesStreamed };
  }

  function currentFingerprint() {
    return source === null ? fingerprint(token) : source.fingerprint;
  }

  const emu = {
    get address() { return address; },
    get port() { return boundPort; },
    get url() { return url; },
    get requests() { return requests; },
    get refused() { return refused; },
    get log() { return log; },
    get bytesStreamed() { return bytesStreamed; },
    get tokenFingerprint() { return currentFingerprint(); },
    // A static token from now on, in place of any key or command.
    setToken: function (newToken, newExpiresIn) {
      checkToken(newToken);
      if (newExpiresIn !== undefined) checkExpiresIn(newExpiresIn);
      source = null;
      token = newToken;
      if (newExpiresIn !== undefined) expiresIn = newExpiresIn;
      tokenSetAt = Date.now();
    },
    fault: function (spec) {
      fault = normalizeFault(spec);
    },
    reset: function () {
      fault = null;
      requests = 0;
      refused = 0;
      bytesStreamed = 0;
      log.length = 0;
    },
    stats: stats,
    close: function () {
      if (!closing) {
        closed = true;
        closing = new Promise(function (resolve) {
          timers.forEach(clearTimeout);
          timers.clear();
          server.close(function () { resolve(); });
          sockets.forEach(function (s) { s.destroy(); });
        });
      }
      return closing;
    },
  };

  // The first token is minted before the emulator answers: a bad key or an unreachable IAM fails
  // here, not at the application's first request.
  const first = source === null ? Promise.resolve() : source.current();
  return first.then(function () {
    return new Promise(function (resolve, reject) {
      server.once('error', reject);
      server.listen({ host: host, port: port }, function () {
        server.removeListener('error', reject);
        // Later errors of the listening socket (EMFILE on accept, ...) are reported, not thrown.
        server.on('error', function (e) {
          process.stderr.write(PROG + ': server error: ' + (e && e.message) + '\n');
        });
        boundPort = server.address().port;
        // Bracket IPv6 literals so 'host:port' stays unambiguous.
        address = (host.indexOf(':') !== -1 ? '[' + host + ']' : host) + ':' + boundPort;
        url = 'http://' + address + TOKEN_PATH;
        resolve(emu);
      });
    });
  });
}

// The real token source the options name, or null. Throws ERR_INVALID_OPTION for bad ones.
function tokenSource(opts, say) {
  const named = ['token', 'saKey', 'tokenCommand'].filter(function (k) { return opts[k] !== undefined; });
  if (named.length > 1) {
    throw Object.assign(new TypeError('use only one of ' + named.join(', ')), { code: 'ERR_INVALID_OPTION' });
  }
  if (opts.iamEndpoint !== undefined && opts.saKey === undefined) {
    throw Object.assign(new TypeError('iamEndpoint needs saKey'), { code: 'ERR_INVALID_OPTION' });
  }
  if (opts.saKey !== undefined) {
    const key = tokens.readSaKey(opts.saKey);
    return tokens.renewingSource(tokens.saKeyMinter(key, opts.iamEndpoint), say);
  }
  if (opts.tokenCommand !== undefined) {
    if (typeof opts.tokenCommand !== 'string' || opts.tokenCommand.trim() === '') {
      throw Object.assign(new TypeError('tokenCommand must be a non-empty command line'), { code: 'ERR_INVALID_OPTION' });
    }
    // expiresIn, when given, is the lifetime of the command's tokens.
    if (opts.expiresIn !== undefined) checkExpiresIn(opts.expiresIn);
    return tokens.renewingSource(tokens.commandMinter(opts.tokenCommand, opts.expiresIn), say);
  }
  return null;
}

function isJsonType(value) {
  return typeof value === 'string' && value.split(';')[0].trim().toLowerCase() === 'application/json';
}

function jsonHeaders(length) {
  return { 'Content-Type': 'application/json', 'Metadata-Flavor': 'Google', 'Content-Length': length };
}

function sendJson(res, status, body) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
  res.writeHead(status, jsonHeaders(buf.length));
  res.end(buf);
}

function send(res, status, type, text) {
  const buf = Buffer.from(text);
  res.writeHead(status, { 'Content-Type': type, 'Metadata-Flavor': 'Google', 'Content-Length': buf.length });
  res.end(buf);
}

function sendText(res, status, text, extra) {
  const buf = Buffer.from(text);
  const headers = { 'Content-Type': 'text/plain; charset=utf-8', 'Metadata-Flavor': 'Google', 'Content-Length': buf.length };
  if (extra) Object.keys(extra).forEach(function (k) { headers[k] = extra[k]; });
  res.writeHead(status, headers);
  res.end(buf);
}

module.exports = {
  startEmulator: startEmulator,
  normalizeFault: normalizeFault,
  fingerprint: fingerprint,
  TOKEN_PATH: TOKEN_PATH,
  FAULT_PRESETS: FAULT_PRESETS,
  IAM_ENDPOINT: tokens.IAM_ENDPOINT,
};
