// In-process cost of one token, without HTTP: CPU µs per token and bytes allocated per token, for
// the node:crypto floor, @fastify/jwt's jwt.verify (+ the aud check), and verifier.verify() with
// never-seen tokens (cache on and off) and with cache hits. Run with `npm run bench:inproc`.
// Every subject is set up once; rounds of one batch per subject interleave them.
// Env: INPROC_ROUNDS (default 21; the first is a warm-up and not counted), INPROC_BATCH (tokens per
// batch, default 500), INPROC_ONLY (a subset of the subjects, comma-separated), INPROC_COLD (MB of
// other memory walked before each call: costs with cold caches, as on a busy server),
// INPROC_PROF (a directory: a V8 CPU profile of each subject's timed runs, <subject>.cpuprofile).
import { fork } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { createPublicKey, verify as rsaVerify } from 'node:crypto'
import { PerformanceObserver } from 'node:perf_hooks'
import { loadavg } from 'node:os'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { createEntraVerifier } from '../dist/index.js'
import { MockJwks } from '../dist/testing/index.js'
import { CLIENT_ID, DISCOVERY_PATH, ISSUER, envInt } from './common.js'
import { USERS, mint, startIdp } from './fixtures.js'

// Bytes allocated are read as heap growth over small batches with no garbage collection in them
// (checked with the gc performance entries), right after a full collection; the heap is left at
// its default sizes, since a larger young generation changes what the cache costs.
const FLAGS = ['--expose-gc']
if (typeof global.gc !== 'function') {
  const child = fork(new URL(import.meta.url).pathname, process.argv.slice(2), { execArgv: [...process.execArgv, ...FLAGS] })
  child.on('exit', code => { process.exitCode = code ?? 1 })
} else {
  await main()
}

async function main () {
  const ROUNDS = Math.max(2, envInt('INPROC_ROUNDS', 21))
  const BATCH = Math.max(100, envInt('INPROC_BATCH', 500))
  const ALLOC_BATCH = 40
  const ALLOC_BATCHES = 10
  // Enough for each subject to see every token once: warm-up, allocation batches, timed batches.
  const TOKENS = 200 + ALLOC_BATCH * ALLOC_BATCHES + ROUNDS * BATCH

  const jwks = new MockJwks({ issuer: ISSUER })
  const idp = await startIdp(jwks)
  const oidcEndpoint = `${idp.origin}${DISCOVERY_PATH}`
  const fresh = await mint(jwks.jwk, USERS, TOKENS)
  const users = await mint(jwks.jwk, 0, USERS)

  const publicKey = createPublicKey({ key: jwks.jwk.toJSON(), format: 'jwk' })
  const pem = publicKey.export({ type: 'spki', format: 'pem' })
  const app = Fastify()
  // @fastify/jwt registered plainly with the static public key, as the bench's floor server does.
  await app.register(fastifyJwt, { secret: { public: pem }, verify: { algorithms: ['RS256'] } })
  await app.ready()

  /** node:crypto RS256 verify with a ready key and JSON.parse of the payload: the floor. */
  function floor (token) {
    const first = token.indexOf('.')
    const last = token.lastIndexOf('.')
    if (!rsaVerify('sha256', Buffer.from(token.slice(0, last)), publicKey, Buffer.from(token.slice(last + 1), 'base64url'))) throw new Error('bad signature')
    return JSON.parse(Buffer.from(token.slice(first + 1, last), 'base64url').toString('utf8'))
  }

  /** @fastify/jwt's jwt.verify with its one verifier for the static key, plus the aud check. */
  function fastifyJwtFloor (token) {
    const payload = app.jwt.verify(token)
    if (payload.aud !== CLIENT_ID) throw new Error('bad audience')
    return payload
  }

  async function verifier (options) {
    const v = createEntraVerifier({ clientId: CLIENT_ID, oidcEndpoint, ...options })
    if (!await v.warm()) throw new Error('the verifier could not load the keys')
    return v
  }

  // Each subject: `prepare` (not measured) gives the function to call per token and the tokens.
  const SUBJECTS = {
    floor: { label: 'node:crypto floor (RS256 verify + JSON.parse)', prepare: async () => ({ call: floor, tokens: fresh }) },
    fastifyJwt: { label: "@fastify/jwt's jwt.verify + aud check", prepare: async () => ({ call: fastifyJwtFloor, tokens: fresh }) },
    cacheOn: {
      label: 'verifier.verify(), never-seen, cache on (default)',
      prepare: async () => { const v = await verifier({}); return { call: t => v.verify(t), tokens: fresh, close: () => v.close() } }
    },
    cacheOff: {
      label: 'verifier.verify(), never-seen, cache off (max: 0)',
      prepare: async () => { const v = await verifier({ tokenCache: { max: 0 } }); return { call: t => v.verify(t), tokens: fresh, close: () => v.close() } }
    },
    hits: {
      label: 'verifier.verify(), cache hits (1000 users)',
      prepare: async () => {
        const v = await verifier({})
        // Twice: a first verification leaves a token on probation, a second one caches it for good.
        for (const t of [...users, ...users]) await v.verify(t)
        // As many calls as the other subjects make, over the 1000 cached tokens.
        const tokens = Array.from({ length: TOKENS }, (_, i) => users[i % users.length])
        return { call: t => v.verify(t), tokens, close: () => v.close() }
      }
    }
  }
  const only = process.env.INPROC_ONLY ? process.env.INPROC_ONLY.split(',') : Object.keys(SUBJECTS)
  const subjects = Object.entries(SUBJECTS).filter(([id]) => only.includes(id))

  const median = values => {
    const sorted = values.filter(v => !Number.isNaN(v)).sort((a, b) => a - b)
    if (sorted.length === 0) return NaN
    const mid = Math.floor(sorted.length / 2)
    return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  }
  const gcStarts = []
  const observer = new PerformanceObserver(list => { for (const entry of list.getEntries()) gcStarts.push(entry.startTime) })
  observer.observe({ entryTypes: ['gc'] })
  // GC entries are delivered asynchronously: give them time to arrive.
  const settle = () => new Promise(resolve => setTimeout(resolve, 20))

  /** Bytes allocated per token: the median over GC-free batches, each right after a full collection. */
  async function allocation (call, take) {
    const perToken = []
    for (let b = 0; b < ALLOC_BATCHES; b++) {
      const batch = Array.from({ length: ALLOC_BATCH }, take)
      global.gc()
      await settle()
      const batchStart = performance.now()
      const heapBefore = process.memoryUsage().heapUsed
      for (const t of batch) await call(t)
      const heapAfter = process.memoryUsage().heapUsed
      const batchEnd = performance.now()
      await settle()
      if (!gcStarts.some(t => t >= batchStart && t <= batchEnd)) perToken.push((heapAfter - heapBefore) / batch.length)
    }
    return median(perToken)
  }

  /** CPU and wall µs per token over one batch of `BATCH` tokens. */
  // INPROC_COLD=<MB>: before each call, walk that much other memory (a server's other work between
  // two requests), and time the calls alone with the wall clock: what a token costs with cold caches.
  const COLD_MB = envInt('INPROC_COLD', 0)
  const other = new Float64Array(COLD_MB * 131072)
  function walkOtherMemory () {
    // One write a 64-byte line: each line is brought in, and the loop has an effect to keep.
    for (let i = 0; i < other.length; i += 8) other[i]++
  }

  async function timedCold (call, take) {
    const batch = Array.from({ length: BATCH }, take)
    let wall = 0
    for (const t of batch) {
      walkOtherMemory()
      const start = performance.now()
      await call(t)
      wall += performance.now() - start
    }
    return { cpu: NaN, wall: wall * 1000 / batch.length }
  }

  async function timed (call, take, profiler) {
    if (COLD_MB > 0) return await timedCold(call, take)
    const batch = Array.from({ length: BATCH }, take)
    if (profiler) await profiler.post('Profiler.start')
    const before = process.cpuUsage()
    const wallStart = performance.now()
    for (const t of batch) await call(t)
    const cpu = process.cpuUsage(before)
    const wall = performance.now() - wallStart
    if (profiler) profiles.push((await profiler.post('Profiler.stop')).profile)
    return { cpu: (cpu.user + cpu.system) / batch.length, wall: wall * 1000 / batch.length }
  }

  const PROF = process.env.INPROC_PROF || null
  const session = PROF ? new Session() : null
  if (session) {
    session.connect()
    await session.post('Profiler.enable')
  }
  // Each subject's profiles of the counted rounds, merged into one file at the end.
  let profiles = []
  const profileOf = Object.fromEntries(subjects.map(([id]) => [id, []]))

  // Every subject is prepared once and kept: the rounds interleave them, so a slow stretch of the
  // machine costs each subject alike. Each subject walks the token list with its own cursor.
  const prepared = {}
  for (const [id, subject] of subjects) {
    const ready = await subject.prepare()
    let next = 0
    const take = () => ready.tokens[next++ % ready.tokens.length]
    for (let i = 0; i < 200; i++) await ready.call(take())
    prepared[id] = { ...ready, take, bytes: await allocation(ready.call, take) }
  }
  const samples = Object.fromEntries(subjects.map(([id]) => [id, []]))
  for (let round = 0; round < ROUNDS; round++) {
    // A new order every round, so no subject always runs right after another.
    const order = subjects.map((_, i) => subjects[(i + round) % subjects.length])
    for (const [id] of order) {
      const { call, take } = prepared[id]
      profiles = profileOf[id]
      const result = await timed(call, take, round > 0 ? session : null)
      if (round > 0) samples[id].push(result)
    }
  }
  for (const { close } of Object.values(prepared)) await close?.()
  observer.disconnect()
  if (session) {
    for (const [id, list] of Object.entries(profileOf)) {
      list.forEach((profile, i) => writeFileSync(`${PROF}/${id}.${i + 1}.cpuprofile`, JSON.stringify(profile)))
    }
    session.disconnect()
  }
  await app.close()
  idp.close()

  const fmt = (n, digits = 1) => Number.isNaN(n) ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
  const med = (id, field) => field === 'bytes' ? prepared[id].bytes : median(samples[id]?.map(s => s[field]) ?? [])

  const column = COLD_MB > 0 ? 'wall' : 'cpu'
  if (COLD_MB > 0) console.log(`Cold caches: ${COLD_MB} MB of other memory walked before each call; the calls alone timed by the wall clock.\n`)
  console.log(`In-process cost per token: node ${process.version}, ${fresh.length.toLocaleString('en-US')} distinct tokens of ${fresh[0].length} bytes, each subject seeing each once (${ALLOC_BATCH * ALLOC_BATCHES} for allocation, in GC-free batches of ${ALLOC_BATCH}; then interleaved batches of ${BATCH} for CPU), medians of ${ROUNDS - 1} rounds (after a warm-up round); load average ${loadavg().map(n => n.toFixed(2)).join(', ')}\n`)
  console.log('| subject | CPU µs/token | wall µs/token | bytes allocated/token |')
  console.log('|---|---:|---:|---:|')
  for (const [id, subject] of subjects) console.log(`| ${subject.label} | ${fmt(med(id, 'cpu'))} | ${fmt(med(id, 'wall'))} | ${fmt(med(id, 'bytes'), 0)} |`)
  if (samples.cacheOn && samples.cacheOff) {
    console.log(`\nCache miss (cache on − cache off, never-seen): ${fmt(med('cacheOn', column) - med('cacheOff', column))} µs ${column} per token (target <= 3 µs).`)
  }
  if (samples.cacheOn && samples.fastifyJwt) {
    console.log(`Never-seen verify() / @fastify/jwt's jwt.verify: ${(med('cacheOn', column) / med('fastifyJwt', column)).toFixed(2)}x ${column}.`)
  }
  console.log(`\nPer-round ${column} µs/token: ${subjects.map(([id]) => `${id} ${samples[id].map(s => fmt(s[column])).join(' ')}`).join('; ')}.`)
}
