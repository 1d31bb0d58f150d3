#!/usr/bin/env node
'use strict';

// Command-line front end of the metadata emulator. stdout carries exactly two
// machine-readable lines (listening URL, export line); everything for humans
// goes to stderr, and the token itself never goes anywhere.

const fs = require('fs');
const { startEmulator, normalizeFault, fingerprint } = require('./index');

const PROG = 'yc-metadata-token emulator';

const USAGE = [
  'Usage: ' + PROG + ' [options]',
  '',
  'Serves a service-account token the way the GCE / Yandex Cloud instance',
  'metadata service does, for local development and tests.',
  '',
  'Options:',
  '  --host HOST          address to bind (default 127.0.0.1)',
  '  --port PORT          port to listen on, 0 = any free port (default 8080)',
  '  --token TOKEN        token to serve; "-" reads it from stdin',
  '  --token-file FILE    read the token from FILE (surrounding whitespace trimmed)',
  '  --token-env VAR      read the token from environment variable VAR',
  '  --expires-in SECS    expires_in to report (default 3600)',
  '  --countdown          count expires_in down from start, like a caching server',
  '  --fault JSON         start with a fault installed, e.g. \'{"status":503,"times":2}\'',
  '  -h, --help           show this help',
  '',
  'Without a token option a random fake token is served.',
  'Then point the client at it:  export YC_METADATA_ADDR=127.0.0.1:8080',
  'Control API: GET /_emulator/stats, POST /_emulator/fault|token|reset',
].join('\n');

class UsageError extends Error {}

const VALUE_FLAGS = ['--host', '--port', '--token', '--token-file', '--token-env', '--expires-in', '--fault'];
const BOOL_FLAGS = ['--countdown', '--help', '-h'];

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let name = arg;
    let value;
    const eq = arg.indexOf('=');
    if (arg.indexOf('--') === 0 && eq !== -1) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    }
    if (BOOL_FLAGS.indexOf(name) !== -1) {
      if (value !== undefined) throw new UsageError(name + ' takes no value');
      out[name === '-h' ? 'help' : name.slice(2)] = true;
      continue;
    }
    if (VALUE_FLAGS.indexOf(name) === -1) {
      throw new UsageError(arg.charAt(0) === '-' ? 'unknown option ' + name : 'unexpected argument ' + JSON.stringify(arg));
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(name + ' needs a value');
      value = argv[++i];
    }
    const key = name.slice(2);
    if (out[key] !== undefined) throw new UsageError(name + ' given twice');
    out[key] = value;
  }

  const sources = ['token', 'token-file', 'token-env'].filter(function (k) { return out[k] !== undefined; });
  if (sources.length > 1) throw new UsageError('use only one of --token, --token-file, --token-env');

  if (out.port !== undefined) {
    if (!/^\d+$/.test(out.port) || Number(out.port) > 65535) {
      throw new UsageError('--port must be an integer 0-65535, got ' + JSON.stringify(out.port));
    }
    out.port = Number(out.port);
  }
  if (out['expires-in'] !== undefined) {
    if (!/^\d+$/.test(out['expires-in'])) {
      throw new UsageError('--expires-in must be a non-negative integer of seconds, got ' + JSON.stringify(out['expires-in']));
    }
    out['expires-in'] = Number(out['expires-in']);
  }
  if (out.host !== undefined && out.host === '') throw new UsageError('--host must not be empty');
  if (out.fault !== undefined) {
    let spec;
    try {
      spec = JSON.parse(out.fault);
    } catch (e) {
      throw new UsageError('--fault is not valid JSON: ' + e.message);
    }
    try {
      normalizeFault(spec);
    } catch (e) {
      throw new UsageError('--fault: ' + e.message);
    }
    out.fault = spec;
  }
  return out;
}

function readStdin() {
  return new Promise(function (resolve, reject) {
    const parts = [];
    process.stdin.on('data', function (d) { parts.push(d); });
    process.stdin.on('end', function () { resolve(Buffer.concat(parts).toString('utf8')); });
    process.stdin.on('error', reject);
  });
}

// Returns { token, generated } or throws UsageError.
function resolveToken(args) {
  const check = function (token, where) {
    const t = token.trim();
    if (t === '') throw new UsageError('token from ' + where + ' is empty');
    return { token: t, generated: false };
  };
  if (args.token === '-') {
    return readStdin().then(function (text) { return check(text, 'stdin'); });
  }
  if (args.token !== undefined) return Promise.resolve(check(args.token, '--token'));
  if (args['token-file'] !== undefined) {
    let text;
    try {
      text = fs.readFileSync(args['token-file'], 'utf8');
    } catch (e) {
      return Promise.reject(new UsageError('cannot read --token-file: ' + e.message));
    }
    return Promise.resolve(check(text, args['token-file']));
  }
  if (args['token-env'] !== undefined) {
    const v = process.env[args['token-env']];
    if (v === undefined) return Promise.reject(new UsageError('environment variable ' + args['token-env'] + ' is not set'));
    return Promise.resolve(check(v, '$' + args['token-env']));
  }
  return Promise.resolve({ token: undefined, generated: true });
}

// Resolves with the exit code: 0 after a clean stop or --help, 2 on a usage
// error, 1 if the server cannot start. Sets process.exitCode as well, so a
// bin wrapper can simply `main(process.argv.slice(n))`.
function main(argv) {
  const done = function (code) {
    process.exitCode = code;
    return code;
  };
  let args;
  try {
    args = parseArgs(argv || []);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(PROG + ': ' + e.message + '\nRun with --help for usage.\n');
    return Promise.resolve(done(2));
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return Promise.resolve(done(0));
  }

  return resolveToken(args).then(function (t) {
    return startEmulator({
      host: args.host,
      port: args.port === undefined ? 8080 : args.port,
      token: t.token,
      expiresIn: args['expires-in'],
      countdown: !!args.countdown,
      quiet: false,
    }).then(function (emu) {
      if (args.fault !== undefined) emu.fault(args.fault);
      process.stdout.write(PROG + ' listening on http://' + emu.address + '\n');
      process.stdout.write('export YC_METADATA_ADDR=' + emu.address + '\n');
      process.stderr.write((t.generated ? 'no token given, serving a random fake token' : 'serving the given token') +
        ' (sha256 fingerprint ' + emu.tokenFingerprint + ')' +
        (args.fault !== undefined ? ', fault ' + JSON.stringify(args.fault) : '') + '\n');
      return waitForSignal(emu);
    }, function (e) {
      process.stderr.write(PROG + ': cannot listen: ' + e.message + '\n');
      return done(1);
    });
  }, function (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(PROG + ': ' + e.message + '\n');
    return done(2);
  });
}

function waitForSignal(emu) {
  return new Promise(function (resolve) {
    let stopping = false;
    const onSignal = function (sig) {
      if (stopping) {
        // A second Ctrl-C means "now": do not wait for anything.
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
      stopping = true;
      process.stderr.write('received ' + sig + ', stopping\n');
      emu.close().then(function () {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
        process.exitCode = 0;
        resolve(0);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

module.exports = { main: main, parseArgs: parseArgs, USAGE: USAGE };

if (require.main === module) {
  main(process.argv.slice(2)).catch(function (e) {
    process.stderr.write(PROG + ': ' + (e && e.stack ? e.stack : e) + '\n');
    process.exitCode = 1;
  });
}
