/**
 * The example API (examples/app.js, what `npm start` runs) through `app.inject`, with the test
 * kit's fake Entra serving its keys through the plugin's `dispatcher` option. The example imports
 * the compiled package, so dist/ is built first when needed (see build.ts).
 */
import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { EntraAuthOptions } from '../../src/index.js'
import { FakeEntra, FAKE_TENANT_ID } from '../../src/testing/index.js'
import { ensureBuilt } from '../helpers/build.js'

interface ExampleModule {
  buildApp: (auth: EntraAuthOptions, fastifyOptions?: object) => Promise<FastifyInstance>
  routes: Array<{ path: string, needs: string }>
}

const CLIENT_ID = '00000000-0000-0000-0000-000000000001'

// Generous: dist/ may be built first.
t.setTimeout(180_000)
await ensureBuilt(['dist/index.js'])
// A JS module without types: imported by URL, typed here.
const example = await import(new URL('../../examples/app.js', import.meta.url).href) as ExampleModule

const entra = new FakeEntra()
const app = await example.buildApp({ clientId: CLIENT_ID, ...entra.pluginOptions() })
t.teardown(async () => {
  await app.close()
  await entra.close()
})

const user = entra.client(CLIENT_ID, 'v2')
const tokens = {
  user: user.generate({ scp: 'Files.Read', roles: false }),
  userV1: entra.client(CLIENT_ID, 'v1').generate({ scp: 'Files.Read', roles: false }),
  admin: user.generate({ scp: 'Files.Read', roles: ['Admin'] }),
  app: entra.client(CLIENT_ID, 'app').generate({ roles: ['Reports.Read.All'] }),
  /** An app-only token granted an app role named like the delegated scope. */
  appWithFilesRole: entra.client(CLIENT_ID, 'app').generate({ roles: ['Files.Read'] }),
  /** A user token whose scope is named like the app role. */
  userWithReportsScope: user.generate({ scp: 'Reports.Read.All', roles: false })
}

function get (url: string, token?: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
}

function isProblem (t: Test, response: LightMyRequestResponse, status: number, type: string): void {
  t.equal(response.statusCode, status, `status ${status}`)
  t.equal(response.headers['content-type'], 'application/problem+json')
  t.equal(response.json().type, type)
  t.match(response.headers['www-authenticate'], /^Bearer/)
}

t.test('/ is open and lists the routes', async t => {
  const response = await get('/')
  t.equal(response.statusCode, 200)
  t.same(response.json().routes.map((route: { path: string }) => route.path), ['/', '/me', '/files', '/reports', '/admin'])
  for (const { path } of example.routes) t.ok(app.hasRoute({ method: 'GET', url: path }), `${path} is a route`)
})

t.test('/me returns the caller identity', async t => {
  await t.test('v2.0 user token', async t => {
    const response = await get('/me', tokens.user)
    t.equal(response.statusCode, 200)
    const body = response.json()
    t.same(body, {
      tenantId: FAKE_TENANT_ID,
      objectId: body.objectId,
      clientId: 'c0ffee00-0000-4000-8000-000000000002',
      version: '2.0',
      isAppOnly: false,
      scopes: ['Files.Read']
    })
    t.match(body.objectId, /^[0-9a-f-]{36}$/)
  })
  await t.test('v1.0 user token', async t => {
    const body = (await get('/me', tokens.userV1)).json()
    t.equal(body.version, '1.0')
    t.equal(body.clientId, 'c0ffee00-0000-4000-8000-000000000002', 'appid of v1.0 tokens')
    t.equal(body.isAppOnly, false)
  })
  await t.test('app-only token', async t => {
    const body = (await get('/me', tokens.app)).json()
    t.equal(body.isAppOnly, true)
    t.same(body.scopes, ['Reports.Read.All'])
  })
  await t.test('no token', async t => isProblem(t, await get('/me'), 401, 'auth_header_missing'))
  await t.test('token for another API', async t => {
    isProblem(t, await get('/me', entra.token('another-api')), 401, 'auth_token_audience_invalid')
  })
})

t.test('/files needs the delegated scope Files.Read', async t => {
  const ok = await get('/files', tokens.user)
  t.equal(ok.statusCode, 200)
  t.same(ok.json().files, ['budget.xlsx', 'roadmap.docx'])
  const denied = await get('/files', tokens.app)
  isProblem(t, denied, 403, 'auth_token_insufficient_scopes')
  t.match(denied.headers['www-authenticate'], `scope="api://${CLIENT_ID}/Files.Read"`)
  isProblem(t, await get('/files', tokens.appWithFilesRole), 403, 'auth_token_insufficient_scopes')
})

t.test('/reports needs the app role Reports.Read.All', async t => {
  const ok = await get('/reports', tokens.app)
  t.equal(ok.statusCode, 200)
  t.equal(ok.json().requestedBy, 'c0ffee00-0000-4000-8000-000000000003')
  isProblem(t, await get('/reports', tokens.user), 403, 'auth_token_insufficient_scopes')
  isProblem(t, await get('/reports', tokens.userWithReportsScope), 403, 'auth_token_insufficient_scopes')
})

t.test('/admin needs both Files.Read and Admin', async t => {
  t.equal((await get('/admin', tokens.admin)).statusCode, 200)
  isProblem(t, await get('/admin', tokens.user), 403, 'auth_token_insufficient_scopes')
  isProblem(t, await get('/admin', user.generate({ scp: false, roles: ['Admin'] })), 403, 'auth_token_insufficient_scopes')
})

t.test('the keys were fetched once for all of the above', async t => {
  t.equal(entra.requests.jwks, 1)
})
