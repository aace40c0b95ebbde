// Benchmark of fastify-entra-auth: server CPU time per request. Run with `npm run bench`; see
// bench/README.md. All servers run at once, each in its own process; the (server, workload) runs
// are interleaved in a new order every round, and each figure is the median over the rounds.
// Env: BENCH_DURATION (s per run, default 3), BENCH_WARMUP (s, default 1), BENCH_ROUNDS (default 5),
// BENCH_TOKENS (never-seen tokens to pre-mint, default 200000), BENCH_CONNECTIONS (default 20),
// BENCH_CPU_PROF=<dir> (V8 CPU profile of each server), BENCH_SKIP_MEMORY=1, BENCH_PIN=0.
import { execFileSync, fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { MockJwks } from '../dist/testing/index.js'
import { ISSUER, ROUTE, envInt } from './common.js'
import { USERS, mint, startIdp } from './fixtures.js'

const DURATION = envInt('BENCH_DURATION', 3)
const WARMUP = envInt('BENCH_WARMUP', 1)
const ROUNDS = Math.max(1, envInt('BENCH_ROUNDS', 5))
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 20)
const POOL = envInt('BENCH_TOKENS', 200_000)
const MEMORY_TOKENS = Math.min(POOL, 200_000)
const CPU_PROF = process.env.BENCH_CPU_PROF || null
const SKIP_MEMORY = process.env.BENCH_SKIP_MEMORY === '1'

/**
 * Load generator on the first CPU, servers on the last (taskset, where there is one): a measured
 * server then never shares its core with autocannon, and the scheduler moves neither around.
 */
const PIN = process.env.BENCH_PIN !== '0' && availableParallelism() >= 2 && hasTaskset()
const SERVER_CPU = String(availableParallelism() - 1)

function hasTaskset () {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** All threads of `pid` onto `cpu`. */
function pin (pid, cpu) {
  if (PIN) execFileSync('taskset', ['-a', '-cp', cpu, String(pid)], { stdio: 'ignore' })
}

const serverPath = fileURLToPath(new URL('./server.js', import.meta.url))
const log = (...args) => console.log(...args)
const MB = 1024 * 1024

/** Tokens with a valid payload and an unknown, distinct `kid` each (no key can verify them). */
function unknownKidTokens (tokens) {
  return tokens.map(token => {
    const [, payload, signature] = token.split('.')
    const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: randomUUID() })).toString('base64url')
    return `${header}.${payload}.${signature}`
  })
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
async function startServer (scenario, idp, label) {
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
  const { port } = await ask('ready')
  pin(child.pid, SERVER_CPU)
  return {
    url: `http://127.0.0.1:${port}${ROUTE}`,
    heapUsed: async () => (await ask('heap')).heapUsed,
    cpuUsage: async () => (await ask('cpu')).usage,
    async stop () {
      if (child.exitCode !== null || !child.connected) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.send({ type: 'stop' })
      const timer = setTimeout(() => child.kill(), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
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

const ALL_SERVERS = {
  plain: 'plain Fastify route (no authentication)',
  hook: 'plain route + one empty onRequest hook',
  floor: 'node:crypto floor: one RS256 verify + JSON.parse in onRequest',
  fjwt: '@fastify/jwt floor: app.jwt.verify(token) with the static key + aud check',
  fjwt2: '@fastify/jwt floor again, in a second process (A/A control)',
  entra: 'fastify-entra-auth',
  'entra-nocache': 'fastify-entra-auth, tokenCache: { max: 0 }',
  jwks: 'fastify-jwt-jwks',
  recipe: "get-jwks' @fastify/jwt recipe (secret callback + request.jwtVerify())",
  jose: 'jose (jwtVerify + createRemoteJWKSet)'
}
/** BENCH_SERVERS=plain,entra runs a subset (a quick look); each target is judged when its servers ran. */
const SERVERS = Object.fromEntries(Object.entries(ALL_SERVERS).filter(([id]) => !process.env.BENCH_SERVERS || process.env.BENCH_SERVERS.split(',').includes(id)))
const WORKLOADS = process.env.BENCH_WORKLOADS ? process.env.BENCH_WORKLOADS.split(',') : ['users', 'fresh']

/** One measured run of `workload` against a running server: server CPU µs per answered request. */
async function run (server, source) {
  if (WARMUP > 0) await cannon(server.url, source, { duration: WARMUP })
  const before = await server.cpuUsage()
  const result = await cannon(server.url, source, { duration: DURATION })
  const after = await server.cpuUsage()
  const cpu = after.user + after.system - before.user - before.system
  const answered = result['2xx']
  return { perRequest: cpu / Math.max(1, answered), rps: result.requests.average, bad: result.requests.total - answered }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Heap growth of a fresh fastify-entra-auth server after distinct valid and unknown-kid tokens. */
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
    return { base, afterValid, afterUnknown, valid: { sent: valid.requests.total, ok: valid['2xx'] }, unknown: { sent: bogus.requests.total, refused: bogus['4xx'] } }
  } finally {
    await server.stop()
  }
}

const fmt = (n, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const x = (n) => `${n.toFixed(2)}x`
const verdict = (pass) => (pass ? 'PASS' : 'FAIL')

async function main () {
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  log('# fastify-entra-auth benchmark: server CPU time per request\n')
  log(`- date: ${new Date().toISOString()}`)
  log(`- node ${process.version}, ${process.platform}/${process.arch}, ${availableParallelism()} cores (${cpu}), shared by autocannon and the servers`)
  log(`- command: npm run bench (BENCH_ROUNDS=${ROUNDS} BENCH_DURATION=${DURATION} BENCH_WARMUP=${WARMUP} BENCH_TOKENS=${POOL} BENCH_CONNECTIONS=${CONNECTIONS})`)
  log(`- ${Object.keys(SERVERS).length} servers started together, each in its own process; ${ROUNDS} rounds, each running every (server, workload) pair once in a new order; autocannon -c ${CONNECTIONS}, ${WARMUP} s warm-up + ${DURATION} s measured per run`)
  log('- the figure is the server process\'s CPU time (process.cpuUsage(), user + system, read over IPC around the measured run) divided by the requests it answered with 2xx: the median over the rounds')
  log(PIN ? `- pinned (taskset): autocannon on CPU 0, every server on CPU ${SERVER_CPU}` : '- not pinned (no taskset, one CPU, or BENCH_PIN=0)')
  log('- a ratio is the median over the rounds of the two servers\' ratio in that round (rounds are judged as pairs: a slow stretch of the machine costs both); the ratio of the medians follows in brackets')
  log(`- load average at start: ${loadavg().map(n => n.toFixed(2)).join(', ')}\n`)

  const jwks = new MockJwks({ issuer: ISSUER })
  const idp = await startIdp(jwks)
  const servers = {}
  try {
    let t = performance.now()
    const users = await mint(jwks.jwk, 0, USERS)
    const fresh = await mint(jwks.jwk, USERS, POOL)
    log(`Minted ${fmt(USERS)} user tokens and ${fmt(POOL)} never-seen tokens (${fresh[0].length} bytes each) in ${fmt((performance.now() - t) / 1000, 1)} s, before any run.\n`)
    // Minting used every core; from here on the parent is autocannon, kept off the servers' core.
    pin(process.pid, '0')

    const started = await Promise.all(Object.keys(SERVERS).map(async id => [id, await startServer(id, idp, id)]))
    for (const [id, server] of started) servers[id] = server
    // Sanity: each server admits a valid token and (but the plain route) refuses a tampered one.
    for (const [id, server] of started) {
      const ok = await status(server.url, users[0])
      const open = id === 'plain' || id === 'hook'
      const forged = open ? 200 : await status(server.url, tamper(users[1]))
      if (ok !== 200 || (!open && forged !== 401)) throw new Error(`${id}: sanity check failed (valid token → ${ok}, tampered token → ${forged})`)
    }

    // Never-seen tokens: every server walks the same pool with its own cursor, so each server sees
    // each token once; users: the same 1000 tokens over and over (cache hits where there is a cache).
    const cursors = Object.fromEntries(Object.keys(SERVERS).map(id => [id, { fresh: new TokenSource(fresh), users: new TokenSource(users) }]))
    const pairs = Object.keys(SERVERS).flatMap(id => WORKLOADS.map(workload => ({ id, workload })))
    const samples = Object.fromEntries(pairs.map(({ id, workload }) => [`${id}/${workload}`, []]))
    let bad = 0
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate and reverse the order each round, so no pair always runs first or last.
      const order = pairs.map((_, i) => pairs[(i + round * 3) % pairs.length])
      if (round % 2 === 1) order.reverse()
      for (const { id, workload } of order) {
        const result = await run(servers[id], cursors[id][workload])
        samples[`${id}/${workload}`].push(result)
        bad += result.bad
      }
      process.stderr.write(`  round ${round + 1}/${ROUNDS} done\n`)
    }
    const cost = (key) => median(samples[key].map(s => s.perRequest))
    const rps = (key) => median(samples[key].map(s => s.rps))
    const wrapped = Object.entries(cursors).filter(([, c]) => c.fresh.wraps > 0).map(([id]) => id)

    const cell = (key, f) => samples[key]?.length > 0 ? f(key) : 'n/a'
    log('| server | users (1000 rotating): CPU µs/request | req/s | never-seen: CPU µs/request | req/s |')
    log('|---|---:|---:|---:|---:|')
    for (const [id, name] of Object.entries(SERVERS)) {
      log(`| ${name} | ${cell(`${id}/users`, k => fmt(cost(k), 1))} | ${cell(`${id}/users`, k => fmt(rps(k)))} | ${cell(`${id}/fresh`, k => fmt(cost(k), 1))} | ${cell(`${id}/fresh`, k => fmt(rps(k)))} |`)
    }
    log(`\nPer-round samples (µs/request): ${pairs.map(({ id, workload }) => `${id}/${workload} ${samples[`${id}/${workload}`].map(s => fmt(s.perRequest, 1)).join(' ')}`).join('; ')}.`)
    // Only this plugin's server keeps verified tokens: for the others a reused token is a new one.
    const reused = wrapped.length === 0 ? '' : ` (the never-seen pool ran out and was reused by ${wrapped.join(', ')}${wrapped.includes('entra') ? ': raise BENCH_TOKENS' : ', none of which caches tokens'})`
    log(`Non-2xx answers or errors in the measured runs: ${fmt(bad)}${reused}.`)
    log(`Identity provider requests: ${idp.counts.discovery} discovery, ${idp.counts.jwks} JWKS (over all servers).\n`)

    // Each ratio is printed when both its servers ran; with a limit it is a target (PASS/FAIL).
    const has = (key) => samples[key]?.length > 0
    const targets = []
    const target = (text, a, b, limit = null, strict = false) => {
      if (!has(a) || !has(b)) return
      const r = median(samples[a].map((sample, round) => sample.perRequest / samples[b][round].perRequest))
      const shown = `${text}: ${x(r)} (${x(cost(a) / cost(b))})`
      if (limit === null) targets.push([shown, null])
      else targets.push([`${shown} (target ${strict ? '<' : '<='} ${x(limit)})`, strict ? r < limit : r <= limit])
    }
    target('A/A control, never-seen tokens: @fastify/jwt floor / the same in a second process', 'fjwt/fresh', 'fjwt2/fresh')
    target('A/A control, 1000 rotating users: @fastify/jwt floor / the same in a second process', 'fjwt/users', 'fjwt2/users')
    target('never-seen tokens: fastify-entra-auth / @fastify/jwt floor', 'entra/fresh', 'fjwt/fresh', 1.15)
    target('never-seen tokens: fastify-entra-auth / node:crypto floor', 'entra/fresh', 'floor/fresh')
    target('never-seen tokens: @fastify/jwt floor / node:crypto floor', 'fjwt/fresh', 'floor/fresh')
    target('never-seen tokens: fastify-entra-auth / fastify-jwt-jwks', 'entra/fresh', 'jwks/fresh', 1, true)
    target("never-seen tokens: fastify-entra-auth / get-jwks' recipe", 'entra/fresh', 'recipe/fresh', 1, true)
    target('never-seen tokens: fastify-entra-auth / jose', 'entra/fresh', 'jose/fresh', 1, true)
    target('never-seen tokens: fastify-entra-auth / the same with the cache off', 'entra/fresh', 'entra-nocache/fresh')
    target('1000 rotating users: fastify-entra-auth / plain route', 'entra/users', 'plain/users', 1.10)
    target('1000 rotating users: empty onRequest hook / plain route', 'hook/users', 'plain/users')
    target('1000 rotating users: fastify-entra-auth / empty onRequest hook', 'entra/users', 'hook/users')
    target('1000 rotating users: fastify-entra-auth / fastify-jwt-jwks', 'entra/users', 'jwks/users', 1, true)
    target("1000 rotating users: fastify-entra-auth / get-jwks' recipe", 'entra/users', 'recipe/users', 1, true)
    target('1000 rotating users: fastify-entra-auth / jose', 'entra/users', 'jose/users', 1, true)
    for (const server of Object.values(servers)) await server.stop()

    if (!SKIP_MEMORY) {
      t = performance.now()
      const distinct = fresh.slice(0, MEMORY_TOKENS)
      const memory = await measureMemory(idp, users, distinct, unknownKidTokens(distinct.slice(0, 100_000)))
      process.stderr.write(`  memory: done in ${fmt((performance.now() - t) / 1000, 1)} s\n`)
      const validGrowth = (memory.afterValid - memory.base) / MB
      const unknownGrowth = (memory.afterUnknown - memory.afterValid) / MB
      log('Heap of a fresh fastify-entra-auth server process (heapUsed after forced full GCs), after a warm-up with the user tokens:\n')
      log('| phase | requests | answers | heapUsed | growth |')
      log('|---|---:|---|---:|---:|')
      log(`| baseline | | | ${fmt(memory.base / MB, 1)} MB | |`)
      log(`| + ${fmt(distinct.length)} distinct valid tokens | ${fmt(memory.valid.sent)} | ${fmt(memory.valid.ok)} 2xx | ${fmt(memory.afterValid / MB, 1)} MB | ${fmt(validGrowth, 1)} MB |`)
      log(`| + ${fmt(memory.unknown.sent)} unknown-kid tokens | ${fmt(memory.unknown.sent)} | ${fmt(memory.unknown.refused)} 4xx | ${fmt(memory.afterUnknown / MB, 1)} MB | ${fmt(unknownGrowth, 1)} MB |\n`)
      targets.push([`heap growth after ${fmt(distinct.length)} distinct valid tokens: ${fmt(validGrowth, 1)} MB (target <= 50 MB)`, validGrowth <= 50])
    }

    log('Ratios and targets (server CPU per request; median of the per-round ratios, the ratio of the medians in brackets):\n')
    for (const [text, pass] of targets) log(pass === null ? `- ${text}` : `- ${verdict(pass)} ${text}`)
    log(`\nLoad average at the end: ${loadavg().map(n => n.toFixed(2)).join(', ')}.`)
  } finally {
    await Promise.allSettled(Object.values(servers).map(server => server.stop()))
    idp.close()
  }
}

await main()
