'use strict'

// Shared fixtures: the emulator for each test, child processes for what must start from a fresh
// process (the default provider, the environment, worker threads, exit behaviour).

const assert = require('assert/strict')
const { spawn } = require('child_process')
const net = require('net')
const path = require('path')
const { startEmulator } = require('../emulator')
// A port nothing listens on: the Node matrix script has the one helper for it.
const { closedPort } = require('../scripts/node-matrix')

const ROOT = path.join(__dirname, '..')

async function withEmulator(options, body) {
  const emu = await startEmulator(options)
  try {
    return await body(emu)
  } finally {
    await emu.close()
  }
}

/** A server that counts every connection it gets and answers nothing useful. */
function trapServer() {
  return peerServer((socket) => socket.end('HTTP/1.1 500 Trap\r\nContent-Length: 0\r\n\r\n'))
}

/** A TCP server on loopback that hands each connection to `answer` and counts them. */
async function peerServer(answer) {
  let connections = 0
  const sockets = new Set()
  const server = net.createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    answer(socket)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    address: '127.0.0.1:' + server.address().port,
    get connections() {
      return connections
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(resolve)
      }),
  }
}

/** This process's environment without proxy, metadata or debug variables, with `env` added. */
function childEnv(env) {
  const clean = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(YC_METADATA_ADDR|GCE_METADATA_HOST|NODE_DEBUG|DEBUG)$|_proxy$/i.test(k)) clean[k] = v
  }
  return { ...clean, ...env }
}

/**
 * Runs `code` in a fresh `node -e` from the package root with `env` added to a clean environment
 * (childEnv). Resolves with { code, stdout, stderr, ms }.
 */
function runNode(code, env, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const child = spawn(process.execPath, ['-e', code], { cwd: ROOT, env: childEnv(env) })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error('child did not exit within ' + timeoutMs + ' ms; stderr: ' + stderr))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6 })
    })
  })
}

/**
 * Copies what the package publishes (package.json "files", with the addon built beside them) to
 * `app`/node_modules/yc-metadata-token: a package that resolves its peers from `app`, not from this
 * repository's dev dependencies (a symlink would).
 */
function copyPackage(app) {
  const fs = require('fs')
  const pkg = require('../package.json')
  const own = path.join(app, 'node_modules', 'yc-metadata-token')
  const built = fs.readdirSync(ROOT).filter((f) => /\.(node|wasm)$/.test(f))
  for (const f of pkg.files.concat(['package.json'], built)) {
    if (fs.existsSync(path.join(ROOT, f))) fs.cpSync(path.join(ROOT, f), path.join(own, f), { recursive: true })
  }
  return own
}

/**
 * Runs `script` with this Node in a fresh namespace made by `unshare <flags>`, after the shell
 * commands `setup`, with neither metadata variable set. Resolves with the JSON the script prints.
 */
async function inNamespace(flags, setup, script) {
  const env = Object.assign({}, process.env)
  delete env.YC_METADATA_ADDR
  delete env.GCE_METADATA_HOST
  const child = spawn('unshare', flags.concat(['sh', '-c', `${setup} && exec "$0" -e "$1"`, process.execPath, script]), {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.equal(code, 0, `child failed: ${err}`)
  return JSON.parse(out)
}

module.exports = { ROOT, withEmulator, closedPort, trapServer, peerServer, childEnv, runNode, inNamespace, copyPackage }
