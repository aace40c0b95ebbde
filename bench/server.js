// One benchmark server, run in its own process by bench/run.js:
//   node --expose-gc bench/server.js <plain|entra|jwks>
// env BENCH_IDP: origin of the local identity provider (http://127.0.0.1:<port>).
// Talks to the parent over IPC: sends { type: 'ready', port } once listening, and answers
// { type: 'heap' } (after a full GC), { type: 'cpu' } and { type: 'stop' }.
import Fastify from 'fastify'
import { CLIENT_ID, DISCOVERY_PATH, ISSUER, JWKS_PATH, ROUTE } from './common.js'

const scenario = process.argv[2]
const idp = process.env.BENCH_IDP

const app = Fastify({ logger: false })
const reply = async () => ({ hello: 'world' })

if (scenario === 'plain') {
  app.get(ROUTE, reply)
} else if (scenario === 'entra') {
  const { entraAuth } = await import('../dist/index.js')
  await app.register(entraAuth, { clientId: CLIENT_ID, oidcEndpoint: `${idp}${DISCOVERY_PATH}` })
  app.get(ROUTE, { onRequest: app.entraAuth() }, reply)
} else if (scenario === 'jwks') {
  const { default: fastifyJwtJwks } = await import('fastify-jwt-jwks')
  await app.register(fastifyJwtJwks, { jwksUrl: `${idp}${JWKS_PATH}`, audience: CLIENT_ID, issuer: ISSUER })
  app.get(ROUTE, { onRequest: app.authenticate }, reply)
} else {
  throw new Error(`unknown scenario '${scenario}' (plain, entra or jwks)`)
}

await app.listen({ host: '127.0.0.1', port: 0 })

function heapUsed () {
  // Several passes, so weakly held and finalisable objects are gone too.
  for (let i = 0; i < 3; i++) global.gc()
  return process.memoryUsage().heapUsed
}

process.on('message', async (message) => {
  if (message.type === 'heap') {
    process.send({ type: 'heap', heapUsed: typeof global.gc === 'function' ? heapUsed() : null })
  } else if (message.type === 'cpu') {
    process.send({ type: 'cpu', usage: process.cpuUsage() })
  } else if (message.type === 'stop') {
    await app.close()
    // A normal exit, so --cpu-prof writes its profile.
    process.disconnect()
  }
})

process.send({ type: 'ready', port: app.server.address().port })
