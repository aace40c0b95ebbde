// One benchmark server, run in its own process by bench/run.js:
//   node --expose-gc bench/server.js <plain|hook|floor|fjwt|fjwt2|entra|entra-nocache|jwks|recipe|jose>
// env BENCH_IDP: origin of the local identity provider (http://127.0.0.1:<port>).
// Talks to the parent over IPC: sends { type: 'ready', port } once listening, and answers
// { type: 'heap' } (after a full GC), { type: 'cpu' } and { type: 'stop' }.
import { createPublicKey, verify } from 'node:crypto'
import Fastify from 'fastify'
import { CLIENT_ID, DISCOVERY_PATH, ISSUER, JWKS_PATH, ROUTE } from './common.js'

const scenario = process.argv[2]
const idp = process.env.BENCH_IDP

const app = Fastify({ logger: false })
const reply = async () => ({ hello: 'world' })
// Every server keeps what it validated on the request, as our plugin does with request.entraToken.
app.decorateRequest('claims', null)

if (scenario === 'plain') {
  app.get(ROUTE, reply)
} else if (scenario === 'hook') {
  // The least any hook-based authentication costs: one callback onRequest hook doing nothing.
  app.get(ROUTE, { onRequest: (request, reply, done) => { request.claims = null; done() } }, reply)
} else if (scenario === 'entra' || scenario === 'entra-nocache') {
  const { entraAuth } = await import('../dist/index.js')
  const tokenCache = scenario === 'entra-nocache' ? { max: 0 } : undefined
  await app.register(entraAuth, { clientId: CLIENT_ID, oidcEndpoint: `${idp}${DISCOVERY_PATH}`, tokenCache })
  app.get(ROUTE, { onRequest: app.entraAuth() }, reply)
} else if (scenario === 'fjwt' || scenario === 'fjwt2') {
  // The @fastify/jwt floor: @fastify/jwt registered plainly with the static public key,
  // app.jwt.verify(token) and the aud check in onRequest. No key fetching, no other claim rule.
  // fjwt2 is the same server in another process: the A/A control, what two identical servers differ by.
  const { default: fastifyJwt } = await import('@fastify/jwt')
  const { keys: [jwk] } = await (await fetch(`${idp}${JWKS_PATH}`)).json()
  const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
  await app.register(fastifyJwt, { secret: { public: pem }, verify: { algorithms: ['RS256'] } })
  app.get(ROUTE, {
    onRequest: async (request, reply) => {
      let claims
      try {
        claims = app.jwt.verify((request.headers.authorization ?? '').slice(7))
      } catch {
        return reply.code(401).send({ error: 'invalid_token' })
      }
      if (claims.aud !== CLIENT_ID) return reply.code(401).send({ error: 'invalid_token' })
      request.claims = claims
    }
  }, reply)
} else if (scenario === 'recipe') {
  // get-jwks' README recipe for @fastify/jwt: a secret callback asking get-jwks for the token's
  // kid, request.jwtVerify() in onRequest. The key URL is the identity provider's, not the token's iss.
  const { default: fastifyJwt } = await import('@fastify/jwt')
  const { default: buildGetJwks } = await import('get-jwks')
  const getJwks = buildGetJwks()
  await app.register(fastifyJwt, {
    decode: { complete: true },
    verify: { allowedIss: ISSUER, allowedAud: CLIENT_ID },
    secret: (request, token, callback) => {
      const { header: { kid, alg } } = token
      getJwks.getPublicKey({ kid, domain: idp, alg }).then(publicKey => callback(null, publicKey), callback)
    }
  })
  app.get(ROUTE, {
    onRequest: async (request, reply) => {
      try {
        request.claims = await request.jwtVerify()
      } catch {
        return reply.code(401).send({ error: 'invalid_token' })
      }
    }
  }, reply)
} else if (scenario === 'floor') {
  // The floor: one node:crypto RS256 verification with a ready key and JSON.parse of the payload,
  // in an onRequest hook. No header rules, no claim checks, no cache: nothing any validator can skip.
  const { keys: [jwk] } = await (await fetch(`${idp}${JWKS_PATH}`)).json()
  const key = createPublicKey({ key: jwk, format: 'jwk' })
  app.get(ROUTE, {
    onRequest: async (request, reply) => {
      const token = (request.headers.authorization ?? '').slice(7)
      const first = token.indexOf('.')
      const last = token.lastIndexOf('.')
      const ok = first > 0 && verify('sha256', Buffer.from(token.slice(0, last)), key, Buffer.from(token.slice(last + 1), 'base64url'))
      if (!ok) return reply.code(401).send({ error: 'invalid_token' })
      request.claims = JSON.parse(Buffer.from(token.slice(first + 1, last), 'base64url').toString('utf8'))
    }
  }, reply)
} else if (scenario === 'jose') {
  // jose's documented recipe: a remote JWK set and jwtVerify with issuer and audience.
  const { createRemoteJWKSet, jwtVerify } = await import('jose')
  const keys = createRemoteJWKSet(new URL(`${idp}${JWKS_PATH}`))
  app.get(ROUTE, {
    onRequest: async (request, reply) => {
      try {
        request.claims = (await jwtVerify((request.headers.authorization ?? '').slice(7), keys, { issuer: ISSUER, audience: CLIENT_ID, algorithms: ['RS256'] })).payload
      } catch {
        return reply.code(401).send({ error: 'invalid_token' })
      }
    }
  }, reply)
} else if (scenario === 'jwks') {
  const { default: fastifyJwtJwks } = await import('fastify-jwt-jwks')
  await app.register(fastifyJwtJwks, { jwksUrl: `${idp}${JWKS_PATH}`, audience: CLIENT_ID, issuer: ISSUER })
  app.get(ROUTE, { onRequest: app.authenticate }, reply)
} else {
  throw new Error(`unknown scenario '${scenario}' (plain, hook, floor, fjwt, fjwt2, entra, entra-nocache, jwks, recipe or jose)`)
}

await app.listen({ host: '127.0.0.1', port: 0 })

function heapUsed () {
  // Several passes, so weakly held and finalisable objects are gone too.
  for (let i = 0; i < 3; i++) global.gc()
  return process.memoryUsage().heapUsed
}

let session = null
process.on('message', async (message) => {
  if (message.type === 'prof-start') {
    const { Session } = await import('node:inspector/promises')
    session = new Session()
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.start')
    process.send({ type: 'prof-start' })
  } else if (message.type === 'prof-stop') {
    const { profile } = await session.post('Profiler.stop')
    const { writeFileSync } = await import('node:fs')
    writeFileSync(message.file, JSON.stringify(profile))
    session.disconnect()
    process.send({ type: 'prof-stop' })
  } else if (message.type === 'heap') {
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
