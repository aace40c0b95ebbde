/**
 * The fake Entra's loopback HTTP server (startFakeEntraServer), in process: the same endpoints
 * as the dispatcher over a real socket, the loopback-only rule, and the start-up notice.
 */
import t from 'tap'
import { request } from 'undici'
import { FAKE_TENANT_ID, startFakeEntraServer } from '../src/testing/index.js'
import { bearer, entraApp } from './helpers/index.js'

const API = '00000000-0000-4000-8000-0000000000a1'

t.test('serves discovery, keys and tokens on 127.0.0.1; the plugin trusts its tokens', async t => {
  const notices: string[] = []
  const server = await startFakeEntraServer({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }], log: line => notices.push(line) })
  t.teardown(() => server.close())
  t.match(server.origin, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal(server.authority, `${server.origin}/${FAKE_TENANT_ID}`)
  t.equal(server.entra.issuer, `https://login.microsoftonline.com/${FAKE_TENANT_ID}/v2.0`, 'an Entra-shaped issuer, as real tokens carry')
  t.equal(notices.length, 1)
  t.match(notices[0], /for development and tests only/)
  t.match(notices[0], /any client ID and secret/)

  const document = await (await fetch(server.oidcEndpoint)).json() as Record<string, unknown>
  t.equal(document.token_endpoint, server.tokenEndpoint)
  t.equal(document.authorization_endpoint, `${server.authority}/oauth2/v2.0/authorize`)

  const reply = await fetch(server.tokenEndpoint, { method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'd', client_secret: 's', scope: `api://${API}/.default` }) })
  t.equal(reply.status, 200)
  t.equal(reply.headers.get('cache-control'), 'no-store')
  const { access_token: token } = await reply.json() as { access_token: string }
  const app = await entraApp({ clientId: API, oidcEndpoint: server.oidcEndpoint })
  t.teardown(() => app.close())
  const me = await app.inject({ url: '/me', headers: bearer(token) })
  t.equal(me.statusCode, 200)
  t.match(me.json(), { isAppOnly: true, scopes: ['Reports.Read.All'] })

  const notFound = await fetch(`${server.origin}/nothing/here`, { method: 'POST', body: 'x' })
  t.equal(notFound.status, 405)
  await notFound.body?.cancel()
  const huge = await request(server.tokenEndpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a='.padEnd(70 * 1024, 'x') }).catch((err: Error) => err)
  if (huge instanceof Error) t.pass('the server hung up on a 70 KiB body')
  else {
    t.equal(huge.statusCode, 413, 'a 70 KiB body is not a token request')
    await huge.body.dump()
  }
})

t.test('a non-loopback host is refused unless allowNonLoopback', async t => {
  for (const host of ['0.0.0.0', '::', '192.0.2.1', 'example.com']) {
    await t.rejects(startFakeEntraServer({ host, log: null }), { name: 'TypeError', message: /not a loopback address.*allowNonLoopback: true/ }, host)
  }
  const allowed = await startFakeEntraServer({ host: '0.0.0.0', allowNonLoopback: true, log: null, clients: [{ clientId: 'only-me', secret: 'x' }], tenantId: '11111111-2222-4333-8444-555555555555' })
  t.teardown(() => allowed.close())
  t.match(allowed.origin, /^http:\/\/0\.0\.0\.0:\d+$/)
  t.equal(allowed.authority, `${allowed.origin}/11111111-2222-4333-8444-555555555555`)

  const v6 = await startFakeEntraServer({ host: '::1', log: null, issuer: 'https://issuer.example/v2.0' }).catch((err: NodeJS.ErrnoException) => err)
  if (v6 instanceof Error) t.equal(v6.code, 'EADDRNOTAVAIL', 'no IPv6 loopback on this machine')
  else {
    t.teardown(() => v6.close())
    t.match(v6.origin, /^http:\/\/\[::1\]:\d+$/)
    t.equal(v6.entra.issuer, 'https://issuer.example/v2.0')
    t.equal((await fetch(v6.entra.jwksUri)).status, 200)
  }
})

t.test('the default notice goes to standard error', async t => {
  const writes: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => { writes.push(String(chunk)); return true }) as typeof process.stderr.write
  let server
  try {
    server = await startFakeEntraServer()
  } finally {
    process.stderr.write = write
  }
  t.teardown(() => server.close())
  t.match(writes.join(''), /^fake Entra ID on http:\/\/127\.0\.0\.1:\d+: for development and tests only/)
})
