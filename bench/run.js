// Benchmark of fastify-entra-auth (GitHub issue 4). Run with `npm run bench`; see bench/README.md.
// Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 3), BENCH_TOKENS (never-seen
// tokens to pre-mint, default 250000), BENCH_CONNECTIONS (default 50), BENCH_CPU_PROF=<dir>
// (write a V8 CPU profile of each server into <dir>), BENCH_SKIP_MEMORY=1,
// BENCH_ONLY=c,d (run only these rows).
import { fork } from 'node:child_process'
import { randomUUID, verify } from 'node:crypto'
import { createServer } from 'node:http'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import autocannon from 'autocannon'
import { MockJwks } from '../dist/testing/index.js'
import { DISCOVERY_PATH, ISSUER, JWKS_PATH, ROUTE, envInt } from './common.js'

const DURATION = envInt('BENCH_DURATION', 10)
const WARMUP = envInt('BENCH_WARMUP', 3)
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 50)
const POOL = envInt('BENCH_TOKENS', 250_000)
const USERS = 1000
const MEMORY_TOKENS = 100_000
const CPU_PROF = process.env.BENCH_CPU_PROF || null
const SKIP_MEMORY = process.env.BENCH_SKIP_MEMORY === '1'
const ONLY = process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',') : null

const serverPath = fileURLToPath(new URL('./server.js', import.meta.url))
const log = (...args) => console.log(...args)
const MB = 1024 * 1024

/** The identity provider: discovery and JWKS on 127.0.0.1, built from the test kit's key. */
async function startIdp (jwks) {
  const counts = { discovery: 0, jwks: 0 }
  const server = createServer((req, res) => {
    const origin = `http://${req.headers.host}`
    let body
    if (req.url === DISCOVERY_PATH) {
      counts.discovery++
      body = {
        issuer: ISSUER,
        jwks_uri: `${origin}${JWKS_PATH}`,
        authorization_endpoint: `${origin}/oauth2/v2.0/authorize`,
        token_endpoint: `${origin}/oauth2/v2.0/token`,
        id_token_signing_alg_values_supported: ['RS256']
      }
    } else if (req.url === JWKS_PATH) {
      counts.jwks++
      body = jwks.toJSON()
    } else {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    counts,
    close () {
      server.closeAllConnections()
      server.close()
    }
  }
}

/** Signs `count` tokens numbered from `from` on all cores (worker threads), before any run. */
async function mint (key, from, count) {
  const privateKeyPem = key.privateKey.export({ type: 'pkcs8', format: 'pem' })
  const workers = Math.max(1, Math.min(availableParallelism(), Math.ceil(count / 1000)))
  const share = Math.ceil(count / workers)
  const parts = []
  for (let w = 0; w < workers; w++) {
    const start = w * share
    const n = Math.min(share, count - start)
    if (n <= 0) break
    parts.push(new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./mint.js', import.meta.url), {
        workerData: { privateKeyPem, kid: key.kid, from: from + start, count: n, users: USERS }
      })
      worker.once('message', resolve)
      worker.once('error', reject)
    }))
  }
  return (await Promise.all(parts)).flat()
}

/** Tokens with a valid payload and an unknown, distinct `kid` each (no key can verify them). */
function unknownKidTokens (tokens) {
  return tokens.map(token => {
    const [, payload, signature] = token.split('.')
    const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: randomUUID() })).toString('base64url')
    return `${header}.${payload}.${signature}`
  })
}

/** CPU microseconds of one RS256 verification with node:crypto (best of 3 rounds over 2000 tokens). */
function rsaVerifyCost (tokens, key) {
  const parts = tokens.slice(0, 2000).map(token => {
    const dot = token.lastIndexOf('.')
    return [Buffer.from(token.slice(0, dot)), Buffer.from(token.slice(dot + 1), 'base64url')]
  })
  let best = Infinity
  for (let round = 0; round < 3; round++) {
    const start = process.cpuUsage()
    for (const [input, signature] of parts) verify('sha256', input, key, signature)
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) / parts.length)
  }
  return best
}

/** Hands out tokens in order; `wraps` counts how often the pool ran out and started over. */
class TokenSource {
  constructor (tokens) {
    this.tokens = tokens
    this.next = 0
    this.wraps = 0
  }

  take () {
    const token = this.tokens[this.next++]
    if (this.next === this.tokens.length) {
      this.next = 0
      this.wraps++
    }
    return token
  }
}

/** Forks `bench/server.js <scenario>` and resolves once it listens. */
function startServer (scenario, idp, label) {
  const execArgv = ['--expose-gc']
  if (CPU_PROF) execArgv.push('--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`, `--cpu-prof-name=${label}.cpuprofile`)
  const child = fork(serverPath, [scenario], { execArgv, env: { ...process.env, BENCH_IDP: idp.origin }, stdio: 'inherit' })
  const ask = (type) => new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(message)
    }
    const onExit = (code) => reject(new Error(`server '${scenario}' exited (${code}) while waiting for '${type}'`))
    child.on('message', onMessage)
    child.once('exit', onExit)
    if (type !== 'ready') child.send({ type })
  })
  return ask('ready').then(({ port }) => ({
    url: `http://127.0.0.1:${port}${ROUTE}`,
    heapUsed: async () => (await ask('heap')).heapUsed,
    cpuUsage: async () => (await ask('cpu')).usage,
    async stop () {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.send({ type: 'stop' })
      const timer = setTimeout(() => child.kill(), 10_000)
      await exited
      clearTimeout(timer)
    }
  }))
}

/** One autocannon run; every request carries the next token of `source`. */
function cannon (url, source, options) {
  return autocannon({
    url,
    connections: CONNECTIONS,
    ...options,
    requests: [{
      method: 'GET',
      path: ROUTE,
      setupRequest (request) {
        request.headers.authorization = `Bearer ${source.take()}`
        return request
      }
    }]
  })
}

async function status (url, token) {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
  await response.arrayBuffer()
  return response.status
}

/** Flips one character in the middle of the signature: the token must then be refused. */
function tamper (token) {
  const at = token.length - 100
  return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1)
}

/** Warm-up, then the measured run, on a fresh server process. */
async function measure (row, idp) {
  const server = await startServer(row.server, idp, row.id)
  try {
    const source = new TokenSource(row.tokens)
    // Sanity: a valid token is admitted, and (when protected) a forged one refused.
    const probe = source.take()
    const ok = await status(server.url, probe)
    const forged = row.server === 'plain' ? 200 : await status(server.url, tamper(row.tokens[row.tokens.length - 1]))
    if (ok !== 200 || (row.server !== 'plain' && forged !== 401)) {
      throw new Error(`${row.id}: sanity check failed (valid token → ${ok}, forged token → ${forged})`)
    }
    if (WARMUP > 0) await cannon(server.url, source, { duration: WARMUP })
    const cpuBefore = await server.cpuUsage()
    const started = process.hrtime.bigint()
    const result = await cannon(server.url, source, { duration: DURATION })
    const elapsed = Number(process.hrtime.bigint() - started) / 1000
    const cpuAfter = await server.cpuUsage()
    const cpu = (cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) / elapsed
    return {
      ...row,
      rps: result.requests.average,
      p99: result.latency.p99,
      total: result.requests.total,
      bad: result.non2xx + result.errors + result.timeouts,
      cpu,
      reused: row.fresh === true && source.wraps > 0
    }
  } finally {
    await server.stop()
  }
}

/** Heap growth of the plugin's server after 100k distinct valid and 100k unknown-kid tokens. */
async function measureMemory (idp, users, fresh, unknown) {
  const server = await startServer('entra', idp, 'memory')
  try {
    await cannon(server.url, new TokenSource(users), { duration: Math.max(WARMUP, 2) })
    const base = await server.heapUsed()
    if (base === null) throw new Error('the server was not started with --expose-gc')
    const valid = await cannon(server.url, new TokenSource(fresh), { amount: fresh.length })
    const afterValid = await server.heapUsed()
    const bogus = await cannon(server.url, new TokenSource(unknown), { amount: unknown.length })
    const afterUnknown = await server.heapUsed()
    return {
      base,
      afterValid,
      afterUnknown,
      valid: { sent: valid.requests.total, ok: valid['2xx'], other: valid.requests.total - valid['2xx'] },
      unknown: { sent: bogus.requests.total, refused: bogus['4xx'], other: bogus.requests.total - bogus['4xx'] }
    }
  } finally {
    await server.stop()
  }
}

const fmt = (n, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ratio = (a, b) => `${(a / b).toFixed(2)}x`
const verdict = (pass) => (pass ? 'PASS' : 'FAIL')

async function main () {
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  log('# fastify-entra-auth benchmark\n')
  log(`- date: ${new Date().toISOString()}`)
  log(`- node ${process.version}, ${process.platform}/${process.arch}, ${availableParallelism()} cores (${cpu}), shared by autocannon and the server`)
  log(`- command: npm run bench (BENCH_DURATION=${DURATION} BENCH_WARMUP=${WARMUP} BENCH_TOKENS=${POOL} BENCH_CONNECTIONS=${CONNECTIONS})`)
  log(`- autocannon -c ${CONNECTIONS}, ${WARMUP} s warm-up then ${DURATION} s measured, each server in its own process`)
  log(`- load average at start: ${loadavg().map(n => n.toFixed(2)).join(', ')} (other processes on the machine skew every number)\n`)

  const jwks = new MockJwks({ issuer: ISSUER })
  const idp = await startIdp(jwks)
  try {
    let t = performance.now()
    const users = await mint(jwks.jwk, 0, USERS)
    const fresh = await mint(jwks.jwk, USERS, POOL)
    log(`Minted ${fmt(USERS)} user tokens and ${fmt(POOL)} never-seen tokens (${fresh[0].length} bytes each) in ${fmt((performance.now() - t) / 1000, 1)} s, before any run.\n`)

    const rows = [
      { id: 'a', server: 'plain', name: '(a) plain Fastify route', tokens: users },
      { id: 'b', server: 'entra', name: `(b) fastify-entra-auth, ${fmt(USERS)} users' tokens rotating`, tokens: users },
      { id: 'c', server: 'entra', name: '(c) fastify-entra-auth, never-seen tokens', tokens: fresh, fresh: true },
      { id: 'd', server: 'jwks', name: '(d) fastify-jwt-jwks, never-seen tokens', tokens: fresh, fresh: true }
    ].filter(row => ONLY === null || ONLY.includes(row.id))
    const results = {}
    for (const row of rows) {
      t = performance.now()
      results[row.id] = await measure(row, idp)
      process.stderr.write(`  ${row.name}: done in ${fmt((performance.now() - t) / 1000, 1)} s\n`)
    }

    const { a, b, c, d } = results
    const measured = Object.values(results)
    const perRequest = (r) => r.cpu * 1e6 / r.rps
    log('| scenario | req/s | p99 latency | vs plain | vs fastify-jwt-jwks | server CPU | server CPU per request | non-2xx/errors |')
    log('|---|---:|---:|---:|---:|---:|---:|---:|')
    for (const r of measured) {
      const vsPlain = a === undefined ? 'n/a' : ratio(r.rps, a.rps)
      const vsJwks = r.id === 'c' && d !== undefined ? ratio(c.rps, d.rps) : ''
      const note = r.reused ? ' (token pool ran out: raise BENCH_TOKENS)' : ''
      log(`| ${r.name}${note} | ${fmt(r.rps)} | ${r.p99} ms | ${vsPlain} | ${vsJwks} | ${fmt(r.cpu * 100)}% | ${fmt(perRequest(r))} µs | ${fmt(r.bad)} |`)
    }
    log(`\nRequests answered in the measured runs: ${measured.map(r => `(${r.id}) ${fmt(r.total)}`).join(', ')}.`)
    log('Server CPU: share of one core the server process used during the measured run; per request: that CPU time divided by the requests answered (lower is better; less sensitive than req/s to the client competing for the same cores).')
    log(`Identity provider requests: ${idp.counts.discovery} discovery, ${idp.counts.jwks} JWKS (over all servers).`)
    const rsa = rsaVerifyCost(fresh, jwks.jwk.publicKey)
    log(`One RSA-2048 (RS256) signature verification costs ${fmt(rsa, 1)} µs of CPU in this process (node:crypto, measured just now).`)
    if (a !== undefined && d !== undefined) {
      const budget = perRequest(d) / 1.5
      const floor = perRequest(a) + rsa
      log(`Budget of target (c): fastify-jwt-jwks costs ${fmt(perRequest(d))} µs of server CPU per request, so 1.5x allows ${fmt(budget)} µs. The plain route plus that one unavoidable verification already cost ${fmt(floor)} µs, leaving ${budget > floor ? `${fmt(budget - floor)} µs` : 'nothing'} for decoding the JOSE header and claims, claim checks, the token cache and the async hook.`)
    }
    log('')

    const targets = []
    if (a !== undefined && b !== undefined) targets.push([`(b) >= 0.85x plain: ${ratio(b.rps, a.rps)}`, b.rps >= 0.85 * a.rps])
    if (c !== undefined && d !== undefined) targets.push([`(c) >= 1.5x fastify-jwt-jwks: ${ratio(c.rps, d.rps)}`, c.rps >= 1.5 * d.rps])

    if (!SKIP_MEMORY) {
      t = performance.now()
      const distinct = fresh.slice(0, MEMORY_TOKENS)
      const memory = await measureMemory(idp, users, distinct, unknownKidTokens(distinct))
      process.stderr.write(`  memory: done in ${fmt((performance.now() - t) / 1000, 1)} s\n`)
      const validGrowth = (memory.afterValid - memory.base) / MB
      const unknownGrowth = (memory.afterUnknown - memory.afterValid) / MB
      const totalGrowth = (memory.afterUnknown - memory.base) / MB
      log('Heap of the fastify-entra-auth server process (heapUsed after a forced full GC), after a warm-up with the user tokens:\n')
      log('| phase | requests | answers | heapUsed | growth |')
      log('|---|---:|---|---:|---:|')
      log(`| baseline | | | ${fmt(memory.base / MB, 1)} MB | |`)
      log(`| + ${fmt(distinct.length)} distinct valid tokens | ${fmt(memory.valid.sent)} | ${fmt(memory.valid.ok)} 2xx, ${fmt(memory.valid.other)} other | ${fmt(memory.afterValid / MB, 1)} MB | ${fmt(validGrowth, 1)} MB |`)
      log(`| + ${fmt(distinct.length)} unknown-kid tokens | ${fmt(memory.unknown.sent)} | ${fmt(memory.unknown.refused)} 4xx, ${fmt(memory.unknown.other)} other | ${fmt(memory.afterUnknown / MB, 1)} MB | ${fmt(unknownGrowth, 1)} MB |`)
      log(`| total | | | | ${fmt(totalGrowth, 1)} MB |\n`)
      targets.push(
        [`heap growth < 50 MB after ${fmt(distinct.length)} distinct valid tokens: ${fmt(validGrowth, 1)} MB`, validGrowth < 50],
        [`heap growth < 50 MB after ${fmt(distinct.length)} unknown-kid tokens: ${fmt(unknownGrowth, 1)} MB (${fmt(totalGrowth, 1)} MB over both)`, unknownGrowth < 50 && totalGrowth < 50]
      )
    }

    log('Targets:\n')
    for (const [text, pass] of targets) log(`- ${verdict(pass)} ${text}`)
    log(`\nLoad average at the end: ${loadavg().map(n => n.toFixed(2)).join(', ')}.`)
  } finally {
    idp.close()
  }
}

await main()
