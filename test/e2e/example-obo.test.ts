/**
 * The example API's /data route (examples/app.js) calls the downstream example API
 * (examples/downstream.js) on the user's behalf: the fake Entra on loopback exchanges the
 * incoming token (`request.entraToken`) for an on-behalf-of token, as `npm start` runs them.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { EntraAuthOptions } from '../../src/index.js'
import { startFakeEntraServer } from '../../src/testing/index.js'
import { ensureBuilt } from '../helpers/build.js'

interface Downstream { url: string, tokenEndpoint: string, clientSecret: string, scope: string }
interface AppModule { buildApp: (auth: EntraAuthOptions, fastifyOptions?: object, downstream?: Downstream) => Promise<FastifyInstance> }
interface DownstreamModule { buildDownstreamApp: (auth: EntraAuthOptions) => Promise<FastifyInstance> }

const API = '00000000-0000-0000-0000-000000000001'
const DOWNSTREAM = '00000000-0000-0000-0000-000000000002'

t.setTimeout(180_000)
await ensureBuilt(['dist/index.js', 'dist/testing/index.js'])
const { buildApp } = await import(new URL('../../examples/app.js', import.meta.url).href) as AppModule
const { buildDownstreamApp } = await import(new URL('../../examples/downstream.js', import.meta.url).href) as DownstreamModule

const fake = await startFakeEntraServer({
  apis: [{ clientId: API, scopes: ['Files.Read'] }, { clientId: DOWNSTREAM, scopes: ['Data.Read'] }],
  clients: [{ clientId: API, secret: 'api-secret' }],
  log: null
})
const downstreamApp = await buildDownstreamApp({ clientId: DOWNSTREAM, oidcEndpoint: fake.oidcEndpoint })
const url = (await downstreamApp.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '')
const downstream = { url, tokenEndpoint: fake.tokenEndpoint, clientSecret: 'api-secret', scope: `api://${DOWNSTREAM}/Data.Read` }
const app = await buildApp({ clientId: API, oidcEndpoint: fake.oidcEndpoint }, {}, downstream)
t.teardown(async () => {
  await app.close()
  await downstreamApp.close()
  await fake.close()
})

t.test('/data: the downstream API answers for the same user, called by the example API', async t => {
  const user = fake.entra.client(API).generate({ scp: 'Files.Read', roles: false })
  const oid = JSON.parse(Buffer.from(user.split('.')[1] as string, 'base64url').toString()).oid as string
  const reply = await app.inject({ url: '/data', headers: { authorization: `Bearer ${user}` } })
  t.equal(reply.statusCode, 200)
  t.same(reply.json(), { user: { tenantId: fake.entra.tenantId, objectId: oid }, calledBy: API, data: ['sales-2025.csv'] })
  t.match((await app.inject({ url: '/' })).json().routes, [{ path: '/' }, {}, {}, {}, {}, { path: '/data' }], '/ lists it')
})

t.test('/data refuses what on-behalf-of can\'t exchange', async t => {
  const app2 = fake.entra.client(API, 'app').generate({ scp: 'Files.Read' })
  const appOnly = await app.inject({ url: '/data', headers: { authorization: `Bearer ${app2}` } })
  t.equal(appOnly.statusCode, 403, 'an app-only token is no user to act for')
  t.match(appOnly.json(), { error: 'invalid_grant', detail: /^AADSTS50013: / })

  const wrongSecret = await buildApp({ clientId: API, oidcEndpoint: fake.oidcEndpoint }, {}, { ...downstream, clientSecret: 'wrong' })
  t.teardown(() => wrongSecret.close())
  const user = fake.entra.client(API).generate({ scp: 'Files.Read', roles: false })
  const refused = await wrongSecret.inject({ url: '/data', headers: { authorization: `Bearer ${user}` } })
  t.equal(refused.statusCode, 502, "the API's own credentials are wrong: not the caller's fault")
  t.match(refused.json(), { error: 'invalid_client' })

  const noScope = await app.inject({ url: '/data', headers: { authorization: `Bearer ${fake.entra.client(API).generate({ scp: 'Other', roles: false })}` } })
  t.equal(noScope.statusCode, 403, 'the plugin refuses a token without Files.Read before any exchange')
  t.equal(noScope.json().type, 'auth_token_insufficient_scopes')
})
