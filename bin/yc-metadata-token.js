#!/usr/bin/env node
'use strict'

// `npx yc-metadata-token emulator [options]`: the package's command line. One subcommand today;
// the emulator's own module parses its options and sets process.exitCode.

const USAGE = [
  'Usage: yc-metadata-token <command> [options]',
  '',
  'Commands:',
  '  emulator [options]   serve a token like the instance metadata service does, for',
  '                       development off-cloud (--sa-key key.json for real tokens); prints',
  '                       export lines: YC_METADATA_ADDR=..., GCE_METADATA_HOST, YDB_METADATA_*',
  '                       (yc-metadata-token emulator --help lists its options)',
  '',
  'Example (your own token, fetched again before it expires; never put a real token in argv,',
  'where every local user can read it):',
  "  npx yc-metadata-token emulator --token-command 'yc iam create-token'",
].join('\n')

function run(argv) {
  const command = argv[0]
  if (command === 'emulator') return require('../emulator/cli').main(argv.slice(1))
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE + '\n')
    process.exitCode = command === undefined ? 2 : 0
    return Promise.resolve(process.exitCode)
  }
  if (command === '-v' || command === '--version') {
    process.stdout.write(require('../package.json').version + '\n')
    process.exitCode = 0
    return Promise.resolve(0)
  }
  process.stderr.write('yc-metadata-token: unknown command ' + JSON.stringify(command) + '\n\n' + USAGE + '\n')
  process.exitCode = 2
  return Promise.resolve(2)
}

run(process.argv.slice(2)).catch(function (err) {
  process.stderr.write('yc-metadata-token: ' + (err && err.stack ? err.stack : err) + '\n')
  process.exitCode = 1
})
