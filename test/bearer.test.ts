/**
 * The `Authorization` header, hardened: RFC 6750 §2.1 `"Bearer" 1*SP b64token`, a challenge
 * without error code for another scheme (§3.1), `invalid_request` for a malformed Bearer
 * credential, and a request with two `Authorization` headers refused — also on a real socket,
 * where Node would keep only the first.
 */
import { connect } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

const entra = new FakeEntra()
t.teardown(() => entra.close())

async function app (t: Test): Promise<FastifyInstance> {
  const fastify = Fastify({ logger: false })
  await fastify.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  fastify.get('/me', { onRequest: fastify.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub }))
  t.teardown(() => fastify.close())
  return fastify
}

interface Outcome { status: number, type?: string, challenge?: string }

async function send (fastify: FastifyInstance, authorization: string | string[]): Promise<Outcome> {
  // light-my-request sends an array as repeated headers (its types say string only).
  const res = await fastify.inject({ url: '/me', headers: { authorization: authorization as string } })
  if (res.statusCode === 200) return { status: 200 }
  return { status: res.statusCode, type: (res.json() as { type: string }).type, challenge: res.headers['www-authenticate'] as string }
}

t.test('Bearer followed by one or more spaces (RFC 6750 §2.1: 1*SP)', async t => {
  const fastify = await app(t)
  const token = entra.token(API_ID)
  for (const header of [`Bearer ${token}`, `Bearer  ${token}`, `Bearer     ${token}`, `bearer   ${token}`, `BEARER ${token}`]) {
    t.same(await send(fastify, header), { status: 200 }, JSON.stringify(header.slice(0, 12)))
  }
})

t.test('another scheme: a challenge without error code (RFC 6750 §3.1)', async t => {
  const fastify = await app(t)
  for (const header of ['Basic dXNlcjpwYXNz', 'Basic', 'DPoP eyJhbGciOi.x.y', 'Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1', 'Digest username="a"', 'Bearerx token']) {
    t.same(await send(fastify, header), { status: 401, type: 'auth_header_invalid', challenge: 'Bearer' }, header)
  }
})

t.test('a malformed Bearer credential: error="invalid_request"', async t => {
  const fastify = await app(t)
  const token = entra.token(API_ID)
  for (const header of ['Bearer', 'Bearer ', `Bearer ${token} extra`, `Bearer ${token},${token}`, `Bearer\t${token}`, 'Bearer "quoted"', 'Bearer a\u00e9b', '(bad) scheme', `Bearer ${token}=x`]) {
    const outcome = await send(fastify, header)
    t.equal(outcome.status, 401, JSON.stringify(header.slice(0, 30)))
    t.equal(outcome.type, 'auth_header_invalid')
    t.match(outcome.challenge, /^Bearer error="invalid_request"/)
  }
})

t.test('two Authorization headers are refused, whichever comes first', async t => {
  const fastify = await app(t)
  const token = entra.token(API_ID)
  t.same(await send(fastify, [`Bearer ${token}`, `Bearer ${token}`]), { status: 401, type: 'auth_header_invalid', challenge: 'Bearer error="invalid_request", error_description="Invalid authorization header"' })
  t.equal((await send(fastify, [`Bearer ${token}`, 'Basic dXNlcjpwYXNz'])).type, 'auth_header_invalid')
  t.equal((await send(fastify, ['Basic dXNlcjpwYXNz', `Bearer ${token}`])).type, 'auth_header_invalid')
})

/** Sends raw HTTP/1.1 and returns the status line and headers of the answer. */
function rawRequest (port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(request))
    let answer = ''
    socket.setEncoding('utf8')
    socket.on('data', chunk => { answer += chunk })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
  })
}

t.test('two Authorization headers on the wire (Node keeps only the first)', async t => {
  const fastify = await app(t)
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const address = fastify.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const token = entra.token(API_ID)
  const request = (...headers: string[]): string => ['GET /me HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', ...headers, '', ''].join('\r\n')

  const single = await rawRequest(port, request(`Authorization: Bearer ${token}`))
  t.match(single, /^HTTP\/1\.1 200 /, 'one header is admitted')
  for (const [first, second] of [[`Bearer ${token}`, 'Basic dXNlcjpwYXNz'], ['Basic dXNlcjpwYXNz', `Bearer ${token}`], [`Bearer ${token}`, `Bearer ${token}`]]) {
    const answer = await rawRequest(port, request(`Authorization: ${first}`, `authorization: ${second}`))
    t.match(answer, /^HTTP\/1\.1 401 /, `${(first as string).slice(0, 10)} then ${(second as string).slice(0, 10)}`)
    t.match(answer, /auth_header_invalid/)
    t.match(answer, /www-authenticate: Bearer error="invalid_request"/i)
  }
})
