#!/usr/bin/env node
'use strict';

// Command-line front end of the metadata emulator. stdout carries the
// machine-readable lines (listening URL, then the export lines for this package,
// Google's libraries and the YDB SDKs); everything for humans goes to stderr, and
// neither the token nor a key ever goes anywhere.

const fs = require('fs');
const { startEmulator, normalizeFault, TOKEN_PATH, FAULT_PRESETS, IAM_ENDPOINT } = require('./index');

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
  '  --allow-host NAMES   also answer requests whose Host is one of these (comma-separated,',
  '                       name or name:port); see "Who it answers" below',
  '  --token-command CMD  real tokens: run CMD (e.g. \'yc iam create-token\') and serve what it',
  '                       prints; run again before the token\'s lifetime (--expires-in, default',
  '                       43200 for a command) runs out',
  '  --sa-key FILE        real tokens: exchange this service-account key (the JSON of',
  '                       `yc iam key create`) with IAM, again well before each expires',
  '  --iam-endpoint URL   where to exchange the key (default ' + IAM_ENDPOINT + ')',
  '  --token -            read the token to serve from stdin (yc iam create-token | ...)',
  '  --token-file FILE    read the token from FILE (surrounding whitespace trimmed)',
  '  --token-env VAR      read the token from environment variable VAR',
  '  --token TOKEN        the token to serve, for fake ones: on the command line it is visible to',
  '                       every local user (ps, /proc/PID/cmdline); pass a real token with',
  '                       --token-command, --token -, --token-file or --token-env instead',
  '  --expires-in SECS    expires_in to report (default 3600)',
  '  --countdown          count expires_in down from start, like a caching server',
  '  --metadata FILE      JSON shaped like the paths, e.g. {"instance":{"id":"..."},"project":',
  '                       {"project-id":"..."}}, over the defaults of instance/ and project/',
  '  --folder-id ID       the folder the tree names: instance/vendor/folder-id, yandex/folder-id,',
  '                       project/project-id (default emulator-folder)',
  '  --cloud-id ID        the cloud: instance/vendor/cloud-id (default emulator-cloud)',
  '  --fault JSON|NAME    start with a fault installed, e.g. \'{"status":503,"times":2}\', or',
  '                       rate-limit: 429 beyond 60 requests per second, like the real service',
  '  -h, --help           show this help',
  '',
  'Without a token option a random fake token is served. Your own token, kept fresh:',
  '  ' + PROG + ' --token-command \'yc iam create-token\'',
  'Then point the client at it:  export YC_METADATA_ADDR=127.0.0.1:8080',
  '(the emulator prints that line, and the ones for Google\'s libraries and the YDB SDKs).',
  '',
  'Who it answers: it serves a real token, so no web page may reach it. A request whose Host is',
  'not 127.0.0.1, localhost, [::1] or the --host address (with its port, or none), or one that',
  'carries Origin or Sec-Fetch-Site other than none, gets 403. When bound to 0.0.0.0 or ::, the',
  'addresses of this machine count as its address; other names need --allow-host.',
  'Control API: GET /_emulator/stats, POST /_emulator/fault|token|reset with a JSON body;',
  'every call needs Metadata-Flavor: Google, a POST also Content-Type: application/json.',
].join('\n');

class UsageError extends Error {}

const VALUE_FLAGS = ['--host', '--port', '--token', '--token-file', '--token-env', '--expires-in', '--fault',
  '--sa-key', '--iam-endpoint', '--token-command', '--metadata', '--allow-host'];
const BOOL_FLAGS = ['--countdown', '--help', '-h'];
// The IDs of Yandex Cloud's keys in the metadata tree (emulator/metadata.js).
VALUE_FLAGS.push('--folder-id', '--cloud-id');

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

  const sources = ['token', 'token-file', 'token-env', 'sa-key', 'token-command'].filter(function (k) { return out[k] !== undefined; });
  if (sources.length > 1) throw new UsageError('use only one of --token, --token-file, --token-env, --sa-key, --token-command');
  if (out['iam-endpoint'] !== undefined && out['sa-key'] === undefined) throw new UsageError('--iam-endpoint needs --sa-key');
  if (out['token-command'] !== undefined && out['token-command'].trim() === '') throw new UsageError('--token-command must not be empty');
  if (out.countdown && (out['sa-key'] !== undefined || out['token-command'] !== undefined)) {
    throw new UsageError('--countdown is for a given token; real tokens always count down');
  }

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
  if (out['allow-host'] !== undefined) {
    out['allow-host'] = out['allow-host'].split(',').map(function (h) { return h.trim(); });
    if (out['allow-host'].some(function (h) { return h === ''; })) throw new UsageError('--allow-host has an empty name');
  }
  if (out.metadata !== undefined) {
    let text;
    try {
      text = fs.readFileSync(out.metadata, 'utf8');
    } catch (e) {
      throw new UsageError('cannot read --metadata: ' + e.message);
    }
    try {
      out.metadata = JSON.parse(text);
    } catch (e) {
      throw new UsageError('--metadata is not valid JSON: ' + e.message);
    }
  }
  if (out.fault !== undefined) {
    let spec;
    try {
      spec = Object.prototype.hasOwnProperty.call(FAULT_PRESETS, out.fault) ? out.fault : JSON.parse(out.fault);
    } catch (e) {
      throw new UsageError('--fault is neither valid JSON nor one of ' + Object.keys(FAULT_PRESETS).join(', ') + ': ' + e.message);
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

  if (args.token !== undefined && args.token !== '-') {
    process.stderr.write('warning: --token on the command line is visible to every local user (ps, /proc/PID/cmdline); ' +
      'for a real token use --token-command, --token -, --token-file or --token-env\n');
  }

  return resolveToken(args).then(function (t) {
    let starting;
    try {
      starting = startEmulator({
        host: args.host,
        port: args.port === undefined ? 8080 : args.port,
        allowHosts: args['allow-host'],
        token: t.token,
        saKey: args['sa-key'],
        iamEndpoint: args['iam-endpoint'],
        tokenCommand: args['token-command'],
        metadata: args.metadata,
        folderId: args['folder-id'],
        cloudId: args['cloud-id'],
        expiresIn: args['expires-in'],
        countdown: !!args.countdown,
        quiet: false,
      });
    } catch (e) {
      if (e.code !== 'ERR_INVALID_OPTION') throw e;
      throw new UsageError(e.message);
    }
    return starting.then(function (emu) {
      if (args.fault !== undefined) emu.fault(args.fault);
      const url = 'http://' + emu.address;
      process.stdout.write(PROG + ' listening on ' + url + '\n');
      process.stdout.write('export YC_METADATA_ADDR=' + emu.address + '\n');
      process.stdout.write('export GCE_METADATA_HOST=' + emu.address + '\n');
      process.stdout.write('export YDB_METADATA_CREDENTIALS=1\n');
      process.stdout.write('export YDB_METADATA_CREDENTIALS_ENDPOINT=' + url + TOKEN_PATH + '\n');
      const what = args['sa-key'] !== undefined ? 'tokens of the service-account key'
        : args['token-command'] !== undefined ? 'tokens printed by the token command'
          : t.generated ? 'no token given, serving a random fake token' : 'serving the given token';
      process.stderr.write(what + ' (sha256 fingerprint ' + emu.tokenFingerprint + ')' +
        (args.fault !== undefined ? ', fault ' + JSON.stringify(args.fault) : '') + '\n');
      return waitForSignal(emu);
    }, function (e) {
      const why = e.syscall === 'listen' || e.code === 'EADDRINUSE' || e.code === 'EACCES' ? 'cannot listen: ' : 'cannot get a token: ';
      process.stderr.write(PROG + ': ' + why + e.message + '\n');
      return done(1);
    });
  }).catch(function (e) {
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
