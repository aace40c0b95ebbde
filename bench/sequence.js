// One server alone, in its own process: cache hits (1000 users), then never-seen tokens, then cache
// hits again, and so on: whether a never-seen run changes what the next runs cost, with no other
// server beside it. Usage: node bench/sequence.js [entra|plain|hook|fjwt|…]   (npm run build first)
// P=1 also writes a CPU profile of the first users run and of the first one after never-seen tokens
// (/tmp/sequence-users-*.cpuprofile; summarise with node bench/profile.js).
import { fork } from 'node:child_process'
import autocannon from 'autocannon'
import { MockJwks } from '../dist/testing/index.js'
import { ISSUER, ROUTE } from './common.js'
import { USERS, mint, startIdp } from './fixtures.js'
const jwks = new MockJwks({ issuer: ISSUER })
const idp = await startIdp(jwks)
const users = await mint(jwks.jwk, 0, USERS)
const fresh = await mint(jwks.jwk, USERS, 40000)
const scenario = process.argv[2] ?? 'entra'
const child = fork(new URL('./server.js', import.meta.url).pathname, [scenario], { execArgv: ['--expose-gc'], env: { ...process.env, BENCH_IDP: idp.origin }, stdio: 'inherit' })
const ask = (type, extra = {}) => new Promise(resolve => { const on = m => { if (m.type === type) { child.off('message', on); resolve(m) } }; child.on('message', on); if (type !== 'ready') child.send({ type, ...extra }) })
const { port } = await ask('ready')
const url = `http://127.0.0.1:${port}${ROUTE}`
const src = list => { let i = 0; return () => list[i++ % list.length] }
const cannon = (take, duration) => autocannon({ url, connections: 20, duration, requests: [{ method: 'GET', path: ROUTE, setupRequest (r) { r.headers.authorization = `Bearer ${take()}`; return r } }] })
async function measure (label, take, prof) {
  await cannon(take, 1)
  if (prof) await ask('prof-start')
  const b = (await ask('cpu')).usage
  const r = await cannon(take, 3)
  const a = (await ask('cpu')).usage
  if (prof) await ask('prof-stop', { file: prof })
  console.log(label.padEnd(28), ((a.user + a.system - b.user - b.system) / r['2xx']).toFixed(1), 'µs/req', r['2xx'], 'answers')
}
const u = src(users); const f = src(fresh)
await measure('users (first)', u, process.env.P ? '/tmp/sequence-users-first.cpuprofile' : null)
await measure('users (again)', u)
await measure('fresh', f)
await measure('users (after fresh)', u, process.env.P ? '/tmp/sequence-users-after-fresh.cpuprofile' : null)
await measure('users (again)', u)
await measure('fresh', f)
await measure('users (after fresh)', u)
child.send({ type: 'stop' }); idp.close(); setTimeout(() => process.exit(0), 500)
