/**
 * The fake Entra of the test kit: its APIs, loopback server, token endpoint grants (client
 * credentials, authorization code, on-behalf-of), sign-in page, MSAL Node against it, and a fuzz
 * of its server. One section per subject below, each with its own fixtures.
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { ConfidentialClientApplication, PublicClientApplication } from '@azure/msal-node'
import t, { type Test } from 'tap'
import { request, fetch } from 'undici'
import { createEntraVerifier } from '../src/index.js'
import { parse, UsageError } from '../src/fake-entra-cli.js'
import { FakeEntra, startFakeEntraServer, FAKE_TENANT_ID, type FakeEntraOptions, FAKE_USER_ID, type FakeHttpResponse, type FakeEntraServer } from '../src/testing/index.js'
import { grantsOf } from '../src/testing/fake-entra.js'
import { bearer, entraApp } from './helpers/index.js'
import { postToken, type TokenReply, msalNetworkClient } from './helpers/token-endpoint.js'

const API = '00000000-0000-4000-8000-0000000000a1'
const WEB = '00000000-0000-4000-8000-0000000000b2'

/**
 * The APIs the fake Entra knows: given as client IDs (an App ID URI is refused with the plugin's
 * hint), one or several, from `FakeEntra`, `startFakeEntraServer` and `fake-entra --api`.
 */
t.test('APIs', async t => {
  const DOWNSTREAM = '00000000-0000-4000-8000-0000000000b2'

  /** The message of what `run` throws. */
  function thrown (run: () => unknown): string {
    try {
      run()
    } catch (err) {
      return (err as Error).message
    }
    return ''
  }

  t.test('an App ID URI as the API is refused with the hint the plugin gives for clientId', async t => {
    let plugin = ''
    try {
      await createEntraVerifier({ clientId: `api://${API}`, tenant: 'contoso.onmicrosoft.com' })
    } catch (err) {
      plugin = (err as Error).message
    }
    t.match(plugin, `must be the application (client) ID, not the App ID URI: use '${API}'`)
    const fake = thrown(() => new FakeEntra({ apis: [{ clientId: API }, { clientId: `api://${DOWNSTREAM}` }] }))
    t.equal(fake, `FakeEntra: apis[1].clientId must be the application (client) ID, not the App ID URI: use '${DOWNSTREAM}' (clients still ask for its scopes as 'api://${DOWNSTREAM}/{scope}')`)
    t.match(thrown(() => new FakeEntra({ apis: [{ clientId: 'https://contoso.example/api' }] })), /apis\[0\]\.clientId must be the application \(client\) ID, not an App ID URI: give the client ID \(a GUID\)$/)
    t.match(thrown(() => new FakeEntra({ apis: [{ clientId: '' }] })), /apis\[0\]\.clientId must be the API's application \(client\) ID, got ''/)
    t.match(thrown(() => new FakeEntra({ apis: [{ clientId: API }, { clientId: API }] })), /apis\[1\]\.clientId '.*' is given twice/)
    await t.rejects(startFakeEntraServer({ apis: [{ clientId: `api://${API}/` }], log: null }), { name: 'TypeError', message: `startFakeEntraServer: apis[0].clientId must be the application (client) ID, not the App ID URI: use '${API}'` })

    const cli = thrown(() => parse(['--api', `api://${API}`]))
    t.equal(cli, `--api must be the application (client) ID, not the App ID URI: use '${API}' (clients still ask for its scopes as 'api://${API}/{scope}')`)
    t.ok(plugin.includes(cli.slice('--api '.length, cli.indexOf(' (clients'))), 'the same words as the plugin')
  })

  t.test('fake-entra --api is repeatable; --app-roles, --scopes and --token-version describe the --api before them', async t => {
    t.same(parse(['--api', API]), { port: 0, allowNonLoopback: false, apis: [{ clientId: API }] }, 'one API, as before')
    t.same(parse(['--scopes', 'Files.Read', '--api', API, '--app-roles', 'A,B']), { port: 0, allowNonLoopback: false, apis: [{ clientId: API, scopes: ['Files.Read'], appRoles: ['A', 'B'] }] }, 'options before the first --api describe it')
    t.same(parse(['--api', API, '--scopes', 'Files.Read', '--api', DOWNSTREAM, '--scopes', 'Data.Read,Data.Write', '--token-version', '1.0']), {
      port: 0,
      allowNonLoopback: false,
      apis: [
        { clientId: API, scopes: ['Files.Read'] },
        { clientId: DOWNSTREAM, scopes: ['Data.Read', 'Data.Write'], tokenVersion: '1.0' }
      ]
    })
    const usage: Array<[string[], RegExp]> = [
      [['--scopes', 'A'], /--scopes describes the API: give its client ID with --api/],
      [['--api', API, '--scopes', 'A', '--scopes', 'B'], /--scopes is given twice for --api/],
      [['--api', API, '--api', API], /--api .* is given twice/],
      [['--api', API, '--token-version', '3'], /--token-version must be 1\.0 or 2\.0, got '3'/],
      [['--api', ''], /--api must be the API's application \(client\) ID/]
    ]
    for (const [args, message] of usage) {
      let error: unknown
      try {
        parse(args)
      } catch (err) {
        error = err
      }
      t.ok(error instanceof UsageError, `${args.join(' ')}: a usage error (exit 2)`)
      t.match((error as Error).message, message)
    }
  })

  t.test('several APIs: each gets its own tokens; the single-API shortcut still needs exactly one', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }, { clientId: DOWNSTREAM, appRoles: ['Data.Read.All'] }] })
    t.teardown(() => entra.close())
    for (const [api, role] of [[API, 'Reports.Read.All'], [DOWNSTREAM, 'Data.Read.All']] as const) {
      const token = await entra.clientCredentials({ clientId: 'daemon', scope: `api://${api}/.default` })
      const verifier = await createEntraVerifier({ clientId: api, ...entra.pluginOptions() })
      const verified = await verifier.verify(token)
      t.same(verified.roles, [role], `a token for ${api} carries its own app roles`)
      await verifier.close()
    }
    await t.rejects(entra.clientCredentials({ clientId: 'daemon' }), { name: 'TypeError', message: /pass `scope`/ })
  })
})

/**
 * The fake Entra's loopback HTTP server (startFakeEntraServer), in process: the same endpoints
 * as the dispatcher over a real socket, the loopback-only rule, and the start-up notice.
 */
t.test('loopback server', async t => {
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
})

/**
 * The fake Entra's token endpoint, client-credentials grant, through the in-process dispatcher:
 * tokens that look like Entra's and pass the plugin's own validation, client authentication by
 * form and HTTP Basic, and every refusal in Entra's OAuth 2.0 error shape.
 */
t.test('client credentials', async t => {
  const DAEMON = '00000000-0000-4000-8000-0000000000c1'

  type Reply = TokenReply

  function claimsOf (jwt: string): { header: Record<string, unknown>, claims: Record<string, unknown> } {
    const [header, payload] = jwt.split('.')
    return { header: JSON.parse(Buffer.from(header as string, 'base64url').toString()), claims: JSON.parse(Buffer.from(payload as string, 'base64url').toString()) }
  }

  /** Entra's error reply: RFC 6749 §5.2 members plus AADSTS code, trace and correlation IDs, not cacheable. */
  function isOAuthError (t: Test, reply: Reply, status: number, error: string, aadsts: number): void {
    t.equal(reply.status, status, `status ${status}`)
    t.equal(reply.body.error, error)
    t.match(reply.body.error_description, new RegExp(`^AADSTS${aadsts}: `))
    t.same(reply.body.error_codes, [aadsts])
    t.match(reply.body, { timestamp: /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/, trace_id: /^[\da-f-]{36}$/, correlation_id: /^[\w-]+$/ })
    t.equal(reply.headers['cache-control'], 'no-store')
    t.match(reply.headers['content-type'], /^application\/json/)
  }

  const CC = { grant_type: 'client_credentials', client_id: DAEMON, client_secret: 's3cret', scope: `api://${API}/.default` }

  t.test('client credentials: a v2.0 app-only token with the configured app roles', async t => {
    const now = Date.UTC(2026, 0, 1, 12)
    const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All', 'Files.Write'] }], now: () => now })
    t.teardown(() => entra.close())
    const reply = await postToken(entra, CC)
    t.equal(reply.status, 200)
    t.equal(reply.headers['cache-control'], 'no-store', 'RFC 6749 §5.1: not cacheable')
    t.same(Object.keys(reply.body).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'token_type'], "Entra's client-credentials reply")
    t.match(reply.body, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 })
    const { header, claims } = claimsOf(reply.body.access_token as string)
    t.same(header, { typ: 'JWT', alg: 'RS256', kid: entra.keys[0]!.kid })
    const iat = now / 1000
    t.match(claims, { aud: API, iss: `https://login.microsoftonline.com/${entra.tenantId}/v2.0`, azp: DAEMON, azpacr: '1', idtyp: 'app', tid: entra.tenantId, ver: '2.0', iat, nbf: iat, exp: iat + 3599, roles: ['Reports.Read.All', 'Files.Write'] })
    t.equal(claims.oid, claims.sub, 'app-only: oid == sub')
    t.match(claims.oid, /^[\da-f]{8}-[\da-f]{4}-4[\da-f]{3}-8[\da-f]{3}-[\da-f]{12}$/, 'the service principal object ID is a GUID')
    t.notOk('scp' in claims, 'no delegated scopes')
    t.notOk('appid' in claims, 'v2.0: the client is azp')
  })

  t.test('the token passes the plugin: 200 on an app-role route, 403 on another role', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }] })
    const app = await entraApp({ clientId: API, ...entra.pluginOptions() })
    app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async () => ({ ok: true }))
    app.get('/admin', { onRequest: app.entraAuth({ roles: ['Admin'] }) }, async () => ({ ok: true }))
    t.teardown(async () => { await app.close(); await entra.close() })
    const access = await entra.clientCredentials({ clientId: DAEMON })
    const me = await app.inject({ url: '/me', headers: bearer(access) })
    t.equal(me.statusCode, 200)
    t.match(me.json(), { version: '2.0', isAppOnly: true, clientId: DAEMON, tenantId: entra.tenantId, scopes: ['Reports.Read.All'] })
    t.equal((await app.inject({ url: '/reports', headers: bearer(access) })).statusCode, 200)
    const admin = await app.inject({ url: '/admin', headers: bearer(access) })
    t.equal(admin.statusCode, 403)
    t.equal(admin.json().type, 'auth_token_insufficient_scopes')
    t.match(admin.headers['www-authenticate'], /error="insufficient_scope"/)
    t.match(admin.headers['www-authenticate'], `scope="api://${API}/.default"`, 'an app role is requested with .default')
  })

  t.test('a v1.0 API gets v1.0 tokens: sts.windows.net issuer, App ID URI audience, appid, x5t', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API, tokenVersion: '1.0', appRoles: ['Reports.Read.All'] }] })
    t.teardown(() => entra.close())
    const reply = await postToken(entra, CC)
    const { header, claims } = claimsOf(reply.body.access_token as string)
    t.equal(header.x5t, header.kid)
    t.match(claims, { aud: `api://${API}`, iss: `https://sts.windows.net/${entra.tenantId}/`, appid: DAEMON, appidacr: '1', idtyp: 'app', ver: '1.0', roles: ['Reports.Read.All'] })
    t.notOk('azp' in claims)
    const verifier = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
    t.teardown(() => verifier.close())
    const verified = await verifier.verify(reply.body.access_token as string)
    t.equal(verified.version, '1.0')
    t.equal(verified.isAppOnly, true)
  })

  t.test('a bare client ID names the API too; per-client app roles replace the API\'s', async t => {
    const entra = new FakeEntra({
      apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }],
      clients: [{ clientId: DAEMON, secret: 's3cret' }, { clientId: 'other-app', secret: 'x', appRoles: [] }]
    })
    t.teardown(() => entra.close())
    const bare = await postToken(entra, { ...CC, scope: `${API}/.default` })
    t.equal(bare.status, 200)
    t.equal(claimsOf(bare.body.access_token as string).claims.aud, API)
    const other = await postToken(entra, { ...CC, client_id: 'other-app', client_secret: 'x' })
    t.equal(other.status, 200)
    t.notOk('roles' in claimsOf(other.body.access_token as string).claims, 'no app permission: no roles claim, as Entra')
  })

  t.test('HTTP Basic client authentication (RFC 6749 §2.3.1), through fetch as well', async t => {
    const entra = new FakeEntra({ clients: [{ clientId: DAEMON, secret: 'p@ss word:1' }] })
    t.teardown(() => entra.close())
    const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`
    const response = await fetch(entra.tokenEndpoint, {
      method: 'POST',
      dispatcher: entra.dispatcher,
      headers: { authorization: basic(DAEMON, 'p@ss word:1') },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: `api://${API}/.default` })
    })
    t.equal(response.status, 200)
    t.equal(claimsOf((await response.json() as { access_token: string }).access_token).claims.azp, DAEMON)
    t.equal(entra.oauthRequests.token, 1)

    const wrong = await postToken(entra, { grant_type: 'client_credentials', scope: CC.scope }, { authorization: basic(DAEMON, 'nope') })
    isOAuthError(t, wrong, 401, 'invalid_client', 7000215)
    t.equal(wrong.headers['www-authenticate'], 'Basic realm="fake-entra"', 'RFC 6749 §5.2: a Basic challenge for Basic credentials')
    const both = await postToken(entra, { ...CC, client_secret: 'p@ss word:1' }, { authorization: basic(DAEMON, 'p@ss word:1') })
    isOAuthError(t, both, 400, 'invalid_request', 90014)
    const garbled = await postToken(entra, { grant_type: 'client_credentials', scope: CC.scope }, { authorization: 'Basic !!!' })
    isOAuthError(t, garbled, 401, 'invalid_client', 7000215)
  })

  t.test('a public client that presents a secret is refused (AADSTS700025): only confidential clients get app-only tokens', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }], clients: [{ clientId: DAEMON, secret: 's3cret' }, { clientId: 'spa' }] })
    t.teardown(() => entra.close())
    for (const secret of ['anything', 's3cret']) {
      const posted = await postToken(entra, { ...CC, client_id: 'spa', client_secret: secret })
      isOAuthError(t, posted, 401, 'invalid_client', 700025)
      t.notOk('access_token' in posted.body)
      const basic = await postToken(entra, { grant_type: 'client_credentials', scope: CC.scope }, { authorization: `Basic ${Buffer.from(`spa:${secret}`).toString('base64')}` })
      isOAuthError(t, basic, 401, 'invalid_client', 700025)
      t.equal(basic.headers['www-authenticate'], 'Basic realm="fake-entra"')
    }
    // The same holds for the user grants: a public client redeems its code with PKCE alone.
    isOAuthError(t, await postToken(entra, { grant_type: 'authorization_code', client_id: 'spa', client_secret: 'x', code: 'c', redirect_uri: 'http://localhost/cb', code_verifier: 'v'.repeat(43) }), 401, 'invalid_client', 700025)
    isOAuthError(t, await postToken(entra, { grant_type: 'refresh_token', client_id: 'spa', client_secret: 'x', refresh_token: 'r' }), 401, 'invalid_client', 700025)
    const confidential = await postToken(entra, CC)
    t.equal(confidential.status, 200, 'the confidential client still gets its app-only token')
    t.match(claimsOf(confidential.body.access_token as string).claims, { idtyp: 'app', azpacr: '1', roles: ['Reports.Read.All'] })
    const anyClient = new FakeEntra({ apis: [{ clientId: API }] })
    t.teardown(() => anyClient.close())
    t.equal((await postToken(anyClient, { ...CC, client_id: 'unregistered' })).status, 200, 'without registrations any client ID with a secret is confidential')
  })

  t.test('refusals: client authentication, scope, grant type, request shape', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API }], clients: [{ clientId: DAEMON, secret: 's3cret' }, { clientId: 'spa' }] })
    t.teardown(() => entra.close())
    isOAuthError(t, await postToken(entra, { ...CC, client_secret: 'wrong' }), 401, 'invalid_client', 7000215)
    const { client_secret: _secret, ...noSecret } = CC
    isOAuthError(t, await postToken(entra, noSecret), 401, 'invalid_client', 7000218)
    isOAuthError(t, await postToken(entra, { ...noSecret, client_id: 'spa' }), 401, 'invalid_client', 7000218)
    isOAuthError(t, await postToken(entra, { ...CC, client_id: 'unknown-app' }), 400, 'unauthorized_client', 700016)
    isOAuthError(t, await postToken(entra, { grant_type: 'client_credentials', client_secret: 'x', scope: CC.scope }), 400, 'invalid_request', 900144)
    isOAuthError(t, await postToken(entra, { ...CC, scope: `api://${API}/Files.Read` }), 400, 'invalid_scope', 1002012)
    isOAuthError(t, await postToken(entra, { ...CC, scope: `openid api://${API}/.default` }), 400, 'invalid_scope', 1002012)
    isOAuthError(t, await postToken(entra, { ...CC, scope: 'Files.Read' }), 400, 'invalid_scope', 70011)
    isOAuthError(t, await postToken(entra, { ...CC, scope: `api://${API}/.default api://other/.default` }), 400, 'invalid_scope', 28000)
    isOAuthError(t, await postToken(entra, { ...CC, scope: 'api://unknown-api/.default' }), 400, 'invalid_resource', 500011)
    const { scope: _scope, ...noScope } = CC
    isOAuthError(t, await postToken(entra, noScope), 400, 'invalid_request', 900144)
    isOAuthError(t, await postToken(entra, { ...CC, grant_type: 'password' }), 400, 'unsupported_grant_type', 70003)
    isOAuthError(t, await postToken(entra, { ...CC, grant_type: '' }), 400, 'invalid_request', 900144)

    const json = await request(entra.tokenEndpoint, { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify(CC) })
    isOAuthError(t, { status: json.statusCode, headers: json.headers, body: await json.body.json() as Record<string, unknown> }, 400, 'invalid_request', 900144)
    const repeated = await request(entra.tokenEndpoint, { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `${new URLSearchParams(CC).toString()}&scope=x` })
    isOAuthError(t, { status: repeated.statusCode, headers: repeated.headers, body: await repeated.body.json() as Record<string, unknown> }, 400, 'invalid_request', 90014)
    const get = await request(entra.tokenEndpoint, { dispatcher: entra.dispatcher, headers: { 'client-request-id': 'my-correlation-1' } })
    const getReply = { status: get.statusCode, headers: get.headers, body: await get.body.json() as Record<string, unknown> }
    isOAuthError(t, getReply, 400, 'invalid_request', 900561)
    t.equal(getReply.body.correlation_id, 'my-correlation-1', "Entra echoes the client's client-request-id as correlation_id")
    const otherTenant = await request(entra.tokenEndpoint.replace(entra.tenantId, 'contoso.example'), { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(CC).toString() })
    t.equal(otherTenant.statusCode, 400)
    t.match(await otherTenant.body.json(), { error: 'invalid_request', error_codes: [90002] })
  })

  t.test('nothing is logged or echoed: secrets never appear in error replies', async t => {
    const entra = new FakeEntra({ clients: [{ clientId: DAEMON, secret: 'right-secret' }] })
    t.teardown(() => entra.close())
    const reply = await postToken(entra, { ...CC, client_secret: 'guessed-secret-value' })
    t.notMatch(JSON.stringify(reply.body), /guessed-secret-value|right-secret/)
  })

  t.test('discovery advertises exactly what the endpoints support; CORS for browsers', async t => {
    const entra = new FakeEntra()
    t.teardown(() => entra.close())
    const response = await request(entra.oidcEndpoint, { dispatcher: entra.dispatcher })
    const document = await response.body.json() as Record<string, unknown>
    t.match(document, {
      issuer: entra.issuer,
      token_endpoint: `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/token`,
      authorization_endpoint: `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/authorize`,
      jwks_uri: entra.jwksUri
    })
    t.same(document.grant_types_supported, ['authorization_code', 'client_credentials', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer'])
    t.same(document.code_challenge_methods_supported, ['S256'])
    t.same(document.response_types_supported, ['code'])
    t.same(document.response_modes_supported, ['query', 'fragment'])
    t.same(document.token_endpoint_auth_methods_supported, ['client_secret_post', 'client_secret_basic', 'none'])
    t.notOk('end_session_endpoint' in document, 'no sign-out endpoint is served, so none is advertised')
    t.same(entra.requests, { discovery: 1, jwks: 0 })
    const preflight = await request(entra.tokenEndpoint, { method: 'OPTIONS', dispatcher: entra.dispatcher, headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-client-sku' } })
    await preflight.body.dump()
    t.equal(preflight.statusCode, 204)
    t.equal(preflight.headers['access-control-allow-origin'], '*')
    t.equal(preflight.headers['access-control-allow-headers'], 'content-type,x-client-sku')
  })

  t.test('clientCredentials() needs a scope unless one API is configured, and reports refusals', async t => {
    const entra = new FakeEntra({ clients: [{ clientId: DAEMON, secret: 's3cret' }] })
    t.teardown(() => entra.close())
    await t.rejects(entra.clientCredentials({ clientId: DAEMON, secret: 's3cret' }), TypeError)
    const access = await entra.clientCredentials({ clientId: DAEMON, secret: 's3cret', scope: `${API}/.default` })
    t.equal(claimsOf(access).claims.aud, API, 'any API is accepted when none is configured')
    await t.rejects(entra.clientCredentials({ clientId: DAEMON, secret: 'bad', scope: `${API}/.default` }), /invalid_client AADSTS7000215/)
  })

  t.test('keys: rotating the fake\'s keys changes the signing key of issued tokens', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API }] })
    t.teardown(() => entra.close())
    const next = entra.newKey('rotated')
    entra.keys = [next]
    t.equal(claimsOf(await entra.clientCredentials({ clientId: DAEMON })).header.kid, 'rotated')
  })
})

/**
 * The fake Entra's authorize endpoint and the authorization-code (PKCE S256) and refresh-token
 * grants, through `handle()` and the in-process dispatcher: what a SPA or web app does with MSAL.
 */
t.test('authorization code', async t => {
  const SPA = '00000000-0000-4000-8000-0000000000b1'
  const REDIRECT = 'http://localhost:3000/auth/callback'

  interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: Record<string, unknown> }

  function pkce (): { verifier: string, challenge: string } {
    const verifier = randomBytes(32).toString('base64url')
    return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
  }

  function claimsOf (jwt: string): Record<string, unknown> {
    return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString())
  }

  /** GET /authorize with `params` (defaults: SPA, code, S256 challenge, a state); the reply as `handle()` gives it. */
  function authorize (entra: FakeEntra, params: Record<string, string | undefined>): { status: number, location: URL | undefined, body: string } {
    const query = new URLSearchParams()
    for (const [name, value] of Object.entries(params)) if (value !== undefined) query.set(name, value)
    const reply = entra.handle({ method: 'GET', url: `${new URL(entra.authorizationEndpoint).pathname}?${query.toString()}`, headers: {}, body: '' })
    return { status: reply.status, location: reply.headers.location === undefined ? undefined : new URL(reply.headers.location), body: reply.body }
  }

  function authorizeParams (challenge: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
    return { client_id: SPA, response_type: 'code', redirect_uri: REDIRECT, scope: `openid profile offline_access api://${API}/Files.Read`, state: 'st-1', nonce: 'n-1', code_challenge: challenge, code_challenge_method: 'S256', ...overrides }
  }

  async function token (entra: FakeEntra, form: Record<string, string>): Promise<Reply> {
    const response = await request(entra.tokenEndpoint, { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() })
    return { status: response.statusCode, headers: response.headers, body: await response.body.json() as Record<string, unknown> }
  }

  function isInvalidGrant (t: Test, reply: Reply, aadsts: number, message = `invalid_grant AADSTS${aadsts}`): void {
    t.equal(reply.status, 400, message)
    t.equal(reply.body.error, 'invalid_grant')
    t.same(reply.body.error_codes, [aadsts])
  }

  /** Signs in and returns the code and the PKCE verifier. */
  function signIn (entra: FakeEntra, overrides: Record<string, string | undefined> = {}): { code: string, verifier: string } {
    const { verifier, challenge } = pkce()
    const reply = authorize(entra, authorizeParams(challenge, overrides))
    const code = reply.location?.searchParams.get('code')
    if (reply.status !== 302 || code === null || code === undefined) throw new Error(`sign-in failed: ${reply.status} ${reply.location?.toString() ?? reply.body}`)
    return { code, verifier }
  }

  function redeem (entra: FakeEntra, code: string, verifier: string, extra: Record<string, string> = {}): Promise<Reply> {
    return token(entra, { grant_type: 'authorization_code', client_id: SPA, code, redirect_uri: REDIRECT, code_verifier: verifier, client_info: '1', ...extra })
  }

  t.test('authorize signs the test user in and redirects back with code and state', async t => {
    const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'] }] })
    t.teardown(() => entra.close())
    const { challenge } = pkce()
    const reply = authorize(entra, authorizeParams(challenge))
    t.equal(reply.status, 302)
    t.equal(reply.location?.origin + (reply.location?.pathname ?? ''), REDIRECT)
    t.match(reply.location?.searchParams.get('code'), /^[\w-]{43}$/)
    t.equal(reply.location?.searchParams.get('state'), 'st-1')
    t.equal(entra.oauthRequests.authorize, 1)

    const fragment = authorize(entra, authorizeParams(challenge, { response_mode: 'fragment' }))
    t.equal(fragment.location?.search, '', 'fragment mode: nothing in the query')
    t.match(fragment.location?.hash, /^#code=[\w-]+&state=st-1$/)
  })

  t.test('code → tokens: delegated access token, ID token, refresh token, client_info; all pass validation', async t => {
    const now = Date.UTC(2026, 0, 1, 12)
    const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'] }], user: { name: 'Ada Lovelace', username: 'ada@contoso.example', roles: ['Admin'] }, now: () => now })
    t.teardown(() => entra.close())
    const { code, verifier } = signIn(entra)
    const reply = await redeem(entra, code, verifier)
    t.equal(reply.status, 200)
    t.match(reply.body, { token_type: 'Bearer', scope: `api://${API}/Files.Read`, expires_in: 3599, ext_expires_in: 3599, refresh_token: /^[\w-]{43}$/ })
    const access = claimsOf(reply.body.access_token as string)
    t.match(access, { aud: API, azp: SPA, azpacr: '0', scp: 'Files.Read', name: 'Ada Lovelace', preferred_username: 'ada@contoso.example', oid: '00000000-0000-4000-8000-0000000051e5', roles: ['Admin'], tid: entra.tenantId, ver: '2.0', iat: now / 1000 })
    t.notOk('idtyp' in access, 'a user token')
    t.not(access.sub, access.oid, 'delegated: sub is pairwise, not the object ID')
    const id = claimsOf(reply.body.id_token as string)
    t.match(id, { aud: SPA, iss: entra.issuerFor(), nonce: 'n-1', oid: access.oid, name: 'Ada Lovelace', preferred_username: 'ada@contoso.example', tid: entra.tenantId, ver: '2.0' })
    t.same(JSON.parse(Buffer.from(reply.body.client_info as string, 'base64url').toString()), { uid: access.oid, utid: entra.tenantId }, "MSAL's client_info: { uid, utid }")

    const verifierOfApi = createEntraVerifier({ clientId: API, ...entra.pluginOptions(), now: () => now })
    t.teardown(() => verifierOfApi.close())
    const verified = await verifierOfApi.verify(reply.body.access_token as string)
    t.match(verified, { version: '2.0', isAppOnly: false, clientId: SPA, objectId: access.oid })
    t.same(verified.scopes, ['Files.Read', 'Admin'])
    t.match(await verifierOfApi.verify(reply.body.id_token as string).catch((err: unknown) => err), { type: 'auth_token_claim_missing', detail: /ID token/ }, 'the plugin knows the ID token for one')
  })

  t.test('without openid / offline_access: no ID token, no refresh token; .default grants the API\'s scopes', async t => {
    const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'], tokenVersion: '1.0' }] })
    t.teardown(() => entra.close())
    const { code, verifier } = signIn(entra, { scope: `api://${API}/.default` })
    const reply = await redeem(entra, code, verifier, { client_info: '' })
    t.equal(reply.status, 200)
    t.same(Object.keys(reply.body).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'scope', 'token_type'])
    const access = claimsOf(reply.body.access_token as string)
    t.match(access, { aud: `api://${API}`, iss: `https://sts.windows.net/${entra.tenantId}/`, appid: SPA, appidacr: '0', scp: 'Files.Read Files.Write', upn: 'test.user@contoso.example', ver: '1.0' })
    const verifier1 = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
    t.teardown(() => verifier1.close())
    t.equal((await verifier1.verify(reply.body.access_token as string)).version, '1.0')
  })

  t.test('sign-in scopes only: a Microsoft Graph token that the API refuses', async t => {
    const entra = new FakeEntra({ autoSignIn: true })
    t.teardown(() => entra.close())
    const { code, verifier } = signIn(entra, { scope: 'openid profile' })
    const reply = await redeem(entra, code, verifier)
    t.equal(reply.status, 200)
    t.match(claimsOf(reply.body.access_token as string), { aud: 'https://graph.microsoft.com', scp: 'openid profile User.Read', ver: '1.0' })
    t.ok(reply.body.id_token)
    const apiVerifier = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
    t.teardown(() => apiVerifier.close())
    t.match(await apiVerifier.verify(reply.body.access_token as string).catch((err: unknown) => err), { type: 'auth_token_audience_invalid' })
  })

  t.test('codes are single use, short-lived, and bound to client, redirect URI and challenge', async t => {
    let now = Date.UTC(2026, 0, 1, 12)
    const entra = new FakeEntra({ autoSignIn: true, now: () => now })
    t.teardown(() => entra.close())

    const first = signIn(entra)
    t.equal((await redeem(entra, first.code, first.verifier)).status, 200)
    isInvalidGrant(t, await redeem(entra, first.code, first.verifier), 54005)

    const expired = signIn(entra)
    now += 10 * 60 * 1000
    isInvalidGrant(t, await redeem(entra, expired.code, expired.verifier), 70008)

    const otherClient = signIn(entra)
    isInvalidGrant(t, await redeem(entra, otherClient.code, otherClient.verifier, { client_id: WEB }), 70000)
    isInvalidGrant(t, await redeem(entra, otherClient.code, otherClient.verifier), 54005)

    const otherRedirect = signIn(entra)
    isInvalidGrant(t, await redeem(entra, otherRedirect.code, otherRedirect.verifier, { redirect_uri: 'http://localhost:3000/other' }), 70000)

    const wrongVerifier = signIn(entra)
    isInvalidGrant(t, await redeem(entra, wrongVerifier.code, pkce().verifier), 501481)
    isInvalidGrant(t, await redeem(entra, wrongVerifier.code, wrongVerifier.verifier), 54005, 'a failed redemption used the code up')

    const noVerifier = signIn(entra)
    isInvalidGrant(t, await token(entra, { grant_type: 'authorization_code', client_id: SPA, code: noVerifier.code, redirect_uri: REDIRECT }), 501481)

    isInvalidGrant(t, await redeem(entra, 'not-a-code', first.verifier), 9002313)
    const missing = await token(entra, { grant_type: 'authorization_code', client_id: SPA, redirect_uri: REDIRECT, code_verifier: first.verifier })
    t.match(missing, { status: 400, body: { error: 'invalid_request', error_codes: [900144] } })
  })

  t.test('a confidential web app redeems with its secret; a wrong or missing secret is invalid_client', async t => {
    const entra = new FakeEntra({ autoSignIn: true, clients: [{ clientId: WEB, secret: 'web-secret' }] })
    t.teardown(() => entra.close())
    const ok = signIn(entra, { client_id: WEB })
    const reply = await redeem(entra, ok.code, ok.verifier, { client_id: WEB, client_secret: 'web-secret' })
    t.equal(reply.status, 200)
    t.equal(claimsOf(reply.body.access_token as string).azpacr, '1', 'authenticated with a secret')
    const wrong = signIn(entra, { client_id: WEB })
    t.match(await redeem(entra, wrong.code, wrong.verifier, { client_id: WEB, client_secret: 'nope' }), { status: 401, body: { error: 'invalid_client', error_codes: [7000215] } })
    const none = signIn(entra, { client_id: WEB })
    t.match(await redeem(entra, none.code, none.verifier, { client_id: WEB }), { status: 401, body: { error: 'invalid_client', error_codes: [7000218] } })
  })

  t.test('refresh tokens: new tokens, rotation, narrowing only, bound to the client, expiry', async t => {
    let now = Date.UTC(2026, 0, 1, 12)
    const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'] }], now: () => now })
    t.teardown(() => entra.close())
    const { code, verifier } = signIn(entra, { scope: `openid offline_access api://${API}/Files.Read api://${API}/Files.Write` })
    const first = await redeem(entra, code, verifier)
    const refresh = first.body.refresh_token as string

    now += 60_000
    const second = await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: refresh, scope: `openid offline_access api://${API}/Files.Read`, client_info: '1' })
    t.equal(second.status, 200)
    t.equal(claimsOf(second.body.access_token as string).scp, 'Files.Read', 'the scope of a refresh may narrow the grant')
    t.equal(claimsOf(second.body.access_token as string).iat, now / 1000)
    t.ok(second.body.id_token, 'openid: a new ID token')
    t.ok(second.body.client_info)
    t.not(second.body.refresh_token, refresh, 'rotated')
    isInvalidGrant(t, await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: refresh }), 9002313)

    const wider = await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: second.body.refresh_token as string, scope: `api://${API}/Files.Write` })
    isInvalidGrant(t, wider, 65001)

    const again = await redeem(entra, signIn(entra, { scope: `offline_access api://${API}/Files.Read` }).code, '')
    t.equal(again.status, 400, 'an empty verifier is refused')
    const fresh = signIn(entra, { scope: `offline_access api://${API}/Files.Read` })
    const third = await redeem(entra, fresh.code, fresh.verifier)
    const unscoped = await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: third.body.refresh_token as string })
    t.equal(unscoped.status, 200, 'no scope: the same grant')
    t.equal(claimsOf(unscoped.body.access_token as string).scp, 'Files.Read')
    isInvalidGrant(t, await token(entra, { grant_type: 'refresh_token', client_id: WEB, refresh_token: unscoped.body.refresh_token as string }), 70000)

    const late = signIn(entra, { scope: `offline_access api://${API}/Files.Read` })
    const lateTokens = await redeem(entra, late.code, late.verifier)
    now += 24 * 60 * 60 * 1000
    isInvalidGrant(t, await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: lateTokens.body.refresh_token as string }), 70008)
  })

  t.test('authorize refusals: PKCE S256 only, response type, scopes go back to the client', async t => {
    const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read'] }] })
    t.teardown(() => entra.close())
    const { challenge } = pkce()
    const back = (overrides: Record<string, string | undefined>): URLSearchParams => {
      const reply = authorize(entra, authorizeParams(challenge, overrides))
      t.equal(reply.status, 302, 'redirected back to the client')
      t.equal(reply.location?.searchParams.get('state'), 'st-1', 'with its state')
      t.equal(reply.location?.searchParams.get('code'), null, 'and no code')
      return reply.location?.searchParams ?? new URLSearchParams()
    }
    t.match(back({ code_challenge_method: 'plain', code_challenge: 'a'.repeat(43) }).get('error_description'), /^AADSTS5000541: .*only S256/)
    t.equal(back({ code_challenge_method: undefined }).get('error'), 'invalid_request', 'no method means plain (RFC 7636 §4.3): refused')
    t.equal(back({ code_challenge: undefined, code_challenge_method: undefined }).get('error'), 'invalid_request', 'PKCE is required')
    t.equal(back({ code_challenge: 'short' }).get('error'), 'invalid_request')
    t.equal(back({ response_type: 'token' }).get('error'), 'unsupported_response_type')
    t.equal(back({ scope: `api://${API}/Files.Delete` }).get('error'), 'invalid_scope')
    t.equal(back({ scope: 'not a scope' }).get('error'), 'invalid_scope')
    t.equal(back({ scope: undefined }).get('error'), 'invalid_request')
    t.equal(grantsOf(entra).codes.size, 0, 'no code was issued')
  })

  t.test('authorize refusals about the client or the redirect URI are shown, never redirected', async t => {
    const entra = new FakeEntra({ autoSignIn: true, clients: [{ clientId: SPA, redirectUris: [REDIRECT] }] })
    t.teardown(() => entra.close())
    const { challenge } = pkce()
    const shown = (overrides: Record<string, string | undefined>, aadsts: number): void => {
      const reply = authorize(entra, authorizeParams(challenge, overrides))
      t.equal(reply.status, 400)
      t.equal(reply.location, undefined, 'no redirect')
      t.same(JSON.parse(reply.body).error_codes, [aadsts])
    }
    shown({ redirect_uri: 'https://evil.example/cb' }, 50011)
    shown({ redirect_uri: undefined }, 900144)
    shown({ client_id: undefined }, 900144)
    shown({ client_id: 'unknown' }, 700016)
    shown({ response_mode: 'form_post' }, 900144)
    const post = entra.handle({ method: 'POST', url: new URL(entra.authorizationEndpoint).pathname, headers: {}, body: '' })
    t.equal(post.status, 400)

    const open = new FakeEntra({ autoSignIn: true })
    t.teardown(() => open.close())
    for (const uri of ['http://evil.example/cb', 'http://localhost:3000/cb#frag', 'not a url']) {
      const reply = authorize(open, authorizeParams(challenge, { redirect_uri: uri }))
      t.equal(reply.status, 400, `${uri}: refused without registered redirect URIs too`)
    }
    t.equal(authorize(open, authorizeParams(challenge, { redirect_uri: 'http://127.0.0.1:8080/cb' })).status, 302, 'http on loopback is fine')
    t.equal(authorize(open, authorizeParams(challenge, { redirect_uri: 'https://app.example/cb' })).status, 302, 'https anywhere is fine')
  })
})

/**
 * On-behalf-of in the fake Entra: a middle-tier API exchanges a user's token for it for a token
 * for a downstream API, for the same user (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
 * `requested_token_use=on_behalf_of`), with Entra's refusals; and MSAL Node's acquireTokenOnBehalfOf.
 */
t.test('on-behalf-of', async t => {
  const DOWNSTREAM = '00000000-0000-4000-8000-0000000000d2'
  const SPA = '00000000-0000-4000-8000-0000000000c3'
  const SECRET = 'api-secret'
  const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

  type Reply = TokenReply

  function fake (options: FakeEntraOptions = {}): FakeEntra {
    return new FakeEntra({
      apis: [{ clientId: API, scopes: ['access_as_user'] }, { clientId: DOWNSTREAM, scopes: ['Data.Read', 'Data.Write'] }],
      clients: [{ clientId: API, secret: SECRET }, { clientId: DOWNSTREAM, secret: 'downstream-secret' }, { clientId: SPA }],
      // The SPA's sign-in is followed by handle() here, not a browser: no sign-in page.
      autoSignIn: true,
      ...options
    })
  }

  function obo (assertion: string, extra: Record<string, string> = {}): Record<string, string> {
    return { grant_type: JWT_BEARER, requested_token_use: 'on_behalf_of', client_id: API, client_secret: SECRET, assertion, scope: `api://${DOWNSTREAM}/.default`, ...extra }
  }

  function claimsOf (jwt: string): Record<string, unknown> {
    return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
  }

  function refused (t: Test, reply: Reply, status: number, error: string, aadsts: number, description?: RegExp): void {
    t.equal(reply.status, status, `status ${status}`)
    t.equal(reply.body.error, error)
    t.same(reply.body.error_codes, [aadsts])
    t.match(reply.body.error_description, new RegExp(`^AADSTS${aadsts}: `))
    if (description !== undefined) t.match(reply.body.error_description, description)
    t.notOk('access_token' in reply.body)
  }

  t.test('a user token for the API becomes a token for the downstream API, for the same user', async t => {
    const entra = fake({ user: { name: 'Ada Lovelace', username: 'ada@contoso.example', roles: ['Reader'] } })
    t.teardown(() => entra.close())
    const verifier = await createEntraVerifier({ clientId: DOWNSTREAM, ...entra.pluginOptions() })
    t.teardown(() => verifier.close())
    // The configured user's object ID: the downstream token takes their names and roles from the directory.
    const assertion = entra.token(API, { scp: 'access_as_user', oid: '00000000-0000-4000-8000-0000000051e5', roles: ['Reader'] })

    const reply = await postToken(entra, obo(assertion))
    t.equal(reply.status, 200)
    t.match(reply.body, { token_type: 'Bearer', expires_in: 3599, scope: `api://${DOWNSTREAM}/Data.Read api://${DOWNSTREAM}/Data.Write` })
    t.notOk('refresh_token' in reply.body, 'no offline_access asked for: no refresh token')
    const downstream = claimsOf(reply.body.access_token as string)
    const incoming = claimsOf(assertion)
    t.match(downstream, { aud: DOWNSTREAM, azp: API, azpacr: '1', oid: incoming.oid, tid: entra.tenantId, scp: 'Data.Read Data.Write', name: 'Ada Lovelace', preferred_username: 'ada@contoso.example', roles: ['Reader'], ver: '2.0' })
    t.not(downstream.sub, incoming.sub, 'sub is pairwise: another app, another subject')
    t.match(downstream.sub, /^[\da-f]{32}$/)
    const verified = await verifier.verify(reply.body.access_token as string)
    t.equal(verified.objectId, incoming.oid)
    t.same(verified.scopes, ['Data.Read', 'Data.Write', 'Reader'], 'scp and the user\'s app roles')
    t.equal(verified.isAppOnly, false)

    const narrow = await postToken(entra, obo(assertion, { scope: `api://${DOWNSTREAM}/Data.Read offline_access` }))
    t.equal(narrow.status, 200)
    t.equal(claimsOf(narrow.body.access_token as string).scp, 'Data.Read', 'only the scope asked for')
    t.equal(claimsOf(narrow.body.access_token as string).sub, downstream.sub, 'one user, one subject per app')
    t.type(narrow.body.refresh_token, 'string', 'offline_access: a refresh token for the API to use later')
    const refreshed = await postToken(entra, { grant_type: 'refresh_token', client_id: API, client_secret: SECRET, refresh_token: narrow.body.refresh_token as string })
    t.equal(refreshed.status, 200)
    t.match(claimsOf(refreshed.body.access_token as string), { aud: DOWNSTREAM, oid: incoming.oid, scp: 'Data.Read', name: 'Ada Lovelace' }, 'the refreshed token is for the same user')

    const { client_id: _id, client_secret: _secret, ...withoutClient } = obo(assertion)
    const basic = await postToken(entra, withoutClient, { authorization: `Basic ${Buffer.from(`${API}:${SECRET}`).toString('base64')}` })
    t.equal(basic.status, 200, 'client_secret_basic works too')
  })

  t.test('v1.0 assertions and a v1.0 downstream API; a user the fake does not list keeps the assertion\'s names', async t => {
    const entra = fake({ apis: [{ clientId: API }, { clientId: DOWNSTREAM, tokenVersion: '1.0', scopes: ['Data.Read'] }] })
    t.teardown(() => entra.close())
    const assertion = entra.client(API, 'v1').generate({ scp: 'user_impersonation', additionalClaims: { upn: 'grace@contoso.example', name: 'Grace Hopper' } })
    const reply = await postToken(entra, obo(assertion))
    t.equal(reply.status, 200)
    t.match(claimsOf(reply.body.access_token as string), { aud: `api://${DOWNSTREAM}`, appid: API, appidacr: '1', iss: `https://sts.windows.net/${entra.tenantId}/`, upn: 'grace@contoso.example', name: 'Grace Hopper', scp: 'Data.Read', ver: '1.0', oid: claimsOf(assertion).oid })
  })

  t.test('a bad assertion is AADSTS50013; only the API the token was issued for may exchange it', async t => {
    const entra = fake()
    t.teardown(() => entra.close())
    const now = Math.floor(Date.now() / 1000)
    const good = entra.token(API, { scp: 'access_as_user' })
    const [header] = good.split('.') as [string]
    const forged = { ...claimsOf(good), scp: 'access_as_user Admin' }
    const foreign = entra.newKey()
    const cases: Array<[string, string, RegExp]> = [
      ['not a JWT', 'not-a-jwt', /not a signed JWT/],
      ['a tampered payload', `${header}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${good.split('.')[2] as string}`, /signature does not verify/],
      ['another key (not published)', entra.client(API, 'v2', foreign).generate({ scp: 'access_as_user' }), /not one of this tenant's signing keys/],
      ['expired', entra.token(API, { scp: 'access_as_user', iat: now - 7200, nbf: now - 7200, exp: now - 3600 }), /not within its valid time range/],
      ['not yet valid', entra.token(API, { scp: 'access_as_user', nbf: now + 3600 }), /not within its valid time range/],
      ['another tenant', entra.token(API, { scp: 'access_as_user', iss: 'https://login.microsoftonline.com/11111111-2222-4333-8444-555555555555/v2.0' }), /not issued by this tenant/],
      ['for another API', entra.token(DOWNSTREAM, { scp: 'access_as_user' }), new RegExp(`audience in the assertion was '${DOWNSTREAM}' and the expected audience is '${API}'`)],
      ['app-only', entra.client(API, 'app').generate(), /not a user's token/],
      ['no scp', entra.token(API, { scp: false }), /not a user's token/]
    ]
    for (const [what, assertion, description] of cases) {
      t.test(what, async t => { refused(t, await postToken(entra, obo(assertion)), 400, 'invalid_grant', 50013, description) })
    }
    // The downstream API can't replay a token it received: the assertion must be for the caller.
    const replay = await postToken(entra, obo(good, { client_id: DOWNSTREAM, client_secret: 'downstream-secret', scope: `api://${API}/.default` }))
    refused(t, replay, 400, 'invalid_grant', 50013, /audience/)
  })

  t.test('the caller is the API as a confidential client; the request names a known downstream API and its scopes', async t => {
    const entra = fake()
    t.teardown(() => entra.close())
    const assertion = entra.token(API, { scp: 'access_as_user' })
    const { client_secret: _secret, ...noSecret } = obo(assertion)
    refused(t, await postToken(entra, noSecret), 401, 'invalid_client', 7000218)
    refused(t, await postToken(entra, obo(assertion, { client_secret: 'wrong' })), 401, 'invalid_client', 7000215)
    refused(t, await postToken(entra, obo(assertion, { client_id: SPA, client_secret: 'anything' })), 401, 'invalid_client', 700025)
    const { client_secret: _s, ...spa } = obo(assertion, { client_id: SPA })
    refused(t, await postToken(entra, spa), 401, 'invalid_client', 7000218, undefined)
    const { requested_token_use: _use, ...noUse } = obo(assertion)
    refused(t, await postToken(entra, noUse), 400, 'invalid_request', 900144, /requested_token_use/)
    refused(t, await postToken(entra, obo(assertion, { requested_token_use: 'something_else' })), 400, 'invalid_request', 70003)
    const { assertion: _a, ...noAssertion } = obo(assertion)
    refused(t, await postToken(entra, noAssertion), 400, 'invalid_request', 900144, /assertion/)
    refused(t, await postToken(entra, obo(assertion, { scope: 'api://00000000-0000-4000-8000-0000000000ff/.default' })), 400, 'invalid_resource', 500011)
    refused(t, await postToken(entra, obo(assertion, { scope: `api://${DOWNSTREAM}/Data.Delete` })), 400, 'invalid_scope', 650053)
    const document = await (await request(entra.oidcEndpoint, { dispatcher: entra.dispatcher })).body.json() as { grant_types_supported: string[] }
    t.ok(document.grant_types_supported.includes(JWT_BEARER), 'discovery advertises the grant')
  })

  t.test('consent: an API registered with permissions gets only those; a scope not consented is AADSTS65001 consent_required', async t => {
    const entra = fake({ clients: [{ clientId: API, secret: SECRET, permissions: [`api://${DOWNSTREAM}/Data.Read`] }] })
    t.teardown(() => entra.close())
    const assertion = entra.token(API, { scp: 'access_as_user' })
    const all = await postToken(entra, obo(assertion))
    t.equal(all.status, 200)
    t.equal(claimsOf(all.body.access_token as string).scp, 'Data.Read', '.default: the consented scopes only')
    const write = await postToken(entra, obo(assertion, { scope: `api://${DOWNSTREAM}/Data.Read api://${DOWNSTREAM}/Data.Write` }))
    refused(t, write, 400, 'invalid_grant', 65001, /not consented to use the application with ID '.*' for scope 'Data.Write'/)
    t.equal(write.body.suberror, 'consent_required', "Entra's suberror: the client must ask the user")
    const none = fake({ clients: [{ clientId: API, secret: SECRET, permissions: [] }] })
    t.teardown(() => none.close())
    const nothing = await postToken(none, obo(none.token(API, { scp: 'access_as_user' })))
    refused(t, nothing, 400, 'invalid_grant', 65001, /for scope 'Data.Read Data.Write'/)
    t.equal(nothing.body.suberror, 'consent_required')
  })

  t.test('MSAL Node: a user signs in to the SPA, the API calls the downstream API with acquireTokenOnBehalfOf', async t => {
    const REDIRECT = 'http://localhost:3000/callback'
    const entra = fake({ clients: [{ clientId: API, secret: SECRET }, { clientId: SPA, redirectUris: [REDIRECT] }], user: { name: 'Ada Lovelace', username: 'ada@contoso.example' } })
    t.teardown(() => entra.close())
    const system = { networkClient: msalNetworkClient(entra) }
    // The SPA (a public client) signs the user in with the code flow and PKCE.
    const spa = new PublicClientApplication({ auth: { clientId: SPA, authority: entra.authority }, system })
    const verifier = randomBytes(32).toString('base64url')
    const scopes = [`api://${API}/access_as_user`]
    const url = new URL(await spa.getAuthCodeUrl({ scopes, redirectUri: REDIRECT, codeChallenge: createHash('sha256').update(verifier).digest('base64url'), codeChallengeMethod: 'S256' }))
    const signIn = entra.handle({ method: 'GET', url: url.pathname + url.search, headers: {}, body: '' })
    const code = new URL(signIn.headers.location as string).searchParams.get('code') as string
    const signedIn = await spa.acquireTokenByCode({ code, scopes, redirectUri: REDIRECT, codeVerifier: verifier })

    // The API checks the incoming token, then asks for the downstream API on the user's behalf.
    const api = await entraApp({ clientId: API, ...entra.pluginOptions() })
    const downstream = await entraApp({ clientId: DOWNSTREAM, ...entra.pluginOptions() })
    t.teardown(async () => { await api.close(); await downstream.close() })
    const middle = new ConfidentialClientApplication({ auth: { clientId: API, clientSecret: SECRET, authority: entra.authority }, system })
    downstream.get('/data', { onRequest: downstream.entraAuth({ scopes: ['Data.Read'] }) }, async request => ({ oid: request.entraToken?.objectId, via: request.entraToken?.clientId }))
    api.get('/report', { onRequest: api.entraAuth({ scopes: ['access_as_user'] }) }, async request => {
      const result = await middle.acquireTokenOnBehalfOf({ oboAssertion: request.entraToken?.raw as string, scopes: [`api://${DOWNSTREAM}/Data.Read`] })
      const data = await downstream.inject({ url: '/data', headers: bearer(result?.accessToken ?? '') })
      return { status: data.statusCode, data: data.json() }
    })
    const report = await api.inject({ url: '/report', headers: bearer(signedIn.accessToken) })
    t.equal(report.statusCode, 200)
    t.same(report.json(), { status: 200, data: { oid: signedIn.account?.localAccountId, via: API } }, 'the downstream API sees the same user, called by the API')
    t.equal(entra.oauthRequests.token, 2, 'one code redemption, one on-behalf-of exchange')

    const again = await api.inject({ url: '/report', headers: bearer(signedIn.accessToken) })
    t.equal(again.statusCode, 200)
    t.equal(entra.oauthRequests.token, 2, "MSAL serves the second call from its cache, keyed by the assertion's hash")
  })
})

/**
 * The fake Entra's sign-in page at the authorize endpoint: test users and a one-off user, the
 * button flow (a plain HTML form posting back), escaping, `prompt=none`, `autoSignIn`, user
 * consent to scopes, and the page being answered to loopback peers only.
 */
t.test('sign-in page', async t => {
  const SPA = '00000000-0000-4000-8000-0000000000b1'
  const REDIRECT = 'http://localhost:3000/'
  const ADA = { name: 'Ada Lovelace', username: 'ada@contoso.example', oid: '00000000-0000-4000-8000-00000000ada0', roles: ['Admin'] }
  const GRACE = { username: 'grace.hopper@contoso.example', roles: [], scopes: ['access_as_user'] }

  interface Flow { entra: FakeEntra, verifier: string, path: string }

  function claimsOf (jwt: string): Record<string, unknown> {
    return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString())
  }

  function fake (t: Test, options: FakeEntraOptions = {}): FakeEntra {
    const entra = new FakeEntra({ apis: [{ clientId: API, scopes: ['access_as_user', 'Files.Read'] }], user: ADA, users: [GRACE], ...options })
    t.teardown(() => entra.close())
    return entra
  }

  /** The authorize request's path and query, with a fresh PKCE pair. */
  function start (entra: FakeEntra, params: Record<string, string> = {}): Flow {
    const verifier = randomBytes(32).toString('base64url')
    const query = new URLSearchParams({
      client_id: SPA,
      response_type: 'code',
      redirect_uri: REDIRECT,
      scope: `openid profile offline_access api://${API}/access_as_user api://${API}/Files.Read`,
      state: 'st-1',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      ...params
    })
    return { entra, verifier, path: `${new URL(entra.authorizationEndpoint).pathname}?${query.toString()}` }
  }

  function get (flow: Flow, remoteAddress?: string): FakeHttpResponse {
    return flow.entra.handle({ method: 'GET', url: flow.path, headers: {}, body: '', ...(remoteAddress === undefined ? {} : { remoteAddress }) })
  }

  /** Submits a form of the page, as a browser does: POST to its action, urlencoded. */
  function submit (flow: Flow, action: string, fields: Record<string, string>, remoteAddress?: string): FakeHttpResponse {
    return flow.entra.handle({ method: 'POST', url: action, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(), ...(remoteAddress === undefined ? {} : { remoteAddress }) })
  }

  /** `&#38;` → `&`: the HTML character references the page writes, decoded. */
  function unescape (html: string): string {
    return html.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
  }

  /** The page's forms: action, and the buttons' name/value pairs. */
  function forms (html: string): Array<{ action: string, buttons: Array<[string, string]> }> {
    return [...html.matchAll(/<form method="post" action="([^"]*)">([\s\S]*?)<\/form>/g)].map(match => ({
      action: unescape(match[1] as string),
      buttons: [...(match[2] as string).matchAll(/<button type="submit" name="([^"]+)" value="([^"]*)"/g)].map(button => [button[1] as string, unescape(button[2] as string)] as [string, string])
    }))
  }

  async function redeem (flow: Flow, reply: FakeHttpResponse): Promise<Record<string, unknown>> {
    const location = new URL(reply.headers.location as string)
    const code = location.searchParams.get('code')
    if (reply.status !== 302 || code === null) throw new Error(`no code: ${reply.status} ${reply.headers.location ?? reply.body}`)
    const response = await request(flow.entra.tokenEndpoint, {
      method: 'POST',
      dispatcher: flow.entra.dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', client_id: SPA, code, redirect_uri: REDIRECT, code_verifier: flow.verifier, client_info: '1' }).toString()
    })
    return await response.body.json() as Record<string, unknown>
  }

  t.test('the page lists the test users with their roles and scopes, a button each, and a one-off form', async t => {
    const entra = fake(t)
    const flow = start(entra)
    const page = get(flow)
    t.equal(page.status, 200)
    t.match(page.headers['content-type'], /^text\/html; charset=utf-8$/)
    t.equal(page.headers['cache-control'], 'no-store')
    t.match(page.headers['content-security-policy'], /default-src 'none'/, 'no script runs on it')
    t.match(page.headers['content-security-policy'], /frame-ancestors 'none'/)
    t.notMatch(page.body, /<script/i, 'plain HTML')
    t.equal(grantsOf(entra).codes.size, 0, 'no code before a choice')

    const graceOid = /<code>([\da-f-]{36})<\/code><\/td>\s*<td><span class="none">none<\/span>/.exec(page.body)?.[1]
    t.ok(graceOid, "Grace's row: her oid, and no app roles")
    for (const shown of ['Ada Lovelace', 'ada@contoso.example', ADA.oid, '<code>Admin</code>', 'Grace Hopper', 'grace.hopper@contoso.example']) t.match(page.body, shown)
    t.match(page.body, /ada@contoso\.example[\s\S]*<code>access_as_user<\/code> <code>Files\.Read<\/code>[\s\S]*grace\.hopper/, 'Ada is granted both scopes')
    t.match(page.body, /grace\.hopper@contoso\.example[\s\S]*<td><code>access_as_user<\/code><\/td>/, 'Grace only the one she consented to')
    const [users, oneOff] = forms(page.body)
    t.equal(users?.action, flow.path, 'the forms post back to the authorize request')
    t.same(users?.buttons, [['user', ADA.oid], ['user', graceOid]], 'a button per user, default first')
    t.equal(oneOff?.action, flow.path)
    t.match(page.body, /<input name="username" required/)
    t.match(page.body, /<input name="roles"/)
  })

  t.test('picking a user on the page completes the code flow as that user', async t => {
    const entra = fake(t)
    const flow = start(entra)
    const [users] = forms(get(flow).body)
    const [name, graceOid] = users?.buttons[1] as [string, string]
    const reply = submit(flow, users?.action as string, { [name]: graceOid })
    t.equal(reply.status, 302)
    t.equal(new URL(reply.headers.location as string).searchParams.get('state'), 'st-1')
    const tokens = await redeem(flow, reply)
    const access = claimsOf(tokens.access_token as string)
    t.match(access, { oid: graceOid, name: 'Grace Hopper', preferred_username: 'grace.hopper@contoso.example', scp: 'access_as_user' })
    t.notOk('roles' in access, 'no app roles assigned')
    t.match(claimsOf(tokens.id_token as string), { oid: graceOid, preferred_username: 'grace.hopper@contoso.example' })
    t.same(JSON.parse(Buffer.from(tokens.client_info as string, 'base64url').toString()), { uid: graceOid, utid: entra.tenantId })
    t.equal(tokens.scope, `api://${API}/access_as_user`, 'the reply names the scopes granted')

    // MSAL refreshes with the scopes it first asked for: the user's consent caps them again.
    const refreshed = await request(entra.tokenEndpoint, {
      method: 'POST',
      dispatcher: entra.dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', client_id: SPA, refresh_token: tokens.refresh_token as string, scope: `openid offline_access api://${API}/access_as_user api://${API}/Files.Read` }).toString()
    })
    const refreshedBody = await refreshed.body.json() as Record<string, unknown>
    t.equal(refreshed.statusCode, 200)
    t.match(claimsOf(refreshedBody.access_token as string), { oid: graceOid, scp: 'access_as_user' }, 'the refresh token keeps the user')

    const ada = await redeem(flow, submit(flow, users?.action as string, { user: ADA.oid }))
    t.match(claimsOf(ada.access_token as string), { oid: ADA.oid, name: 'Ada Lovelace', roles: ['Admin'], scp: 'access_as_user Files.Read' })

    const unknown = submit(flow, users?.action as string, { user: '00000000-0000-4000-8000-00000000dead' })
    t.equal(unknown.status, 302)
    t.match(new URL(unknown.headers.location as string).searchParams.get('error_description'), /^AADSTS50034: /)
  })

  t.test('a one-off user: the username and app roles typed in, an object ID that stays the same', async t => {
    const entra = fake(t)
    const flow = start(entra)
    const [, oneOff] = forms(get(flow).body)
    const first = await redeem(flow, submit(flow, oneOff?.action as string, { username: ' alan.turing@contoso.example ', roles: 'Reports.Read, Admin Reports.Read' }))
    const access = claimsOf(first.access_token as string)
    t.match(access, { name: 'Alan Turing', preferred_username: 'alan.turing@contoso.example', roles: ['Reports.Read', 'Admin'], scp: 'access_as_user Files.Read' })
    t.match(access.oid, /^[\da-f]{8}-[\da-f]{4}-4[\da-f]{3}-8[\da-f]{3}-[\da-f]{12}$/)
    t.not(access.oid, FAKE_USER_ID)
    const again = await redeem(flow, submit(flow, oneOff?.action as string, { username: 'alan.turing@contoso.example' }))
    t.equal(claimsOf(again.access_token as string).oid, access.oid, 'same username, same oid')
    t.notOk('roles' in claimsOf(again.access_token as string), 'no roles typed: none')

    for (const [fields, why] of [[{ username: 'not a username' }, /name@domain/], [{}, /name@domain/], [{ username: 'x@y.example', roles: 'A'.repeat(121) }, /App roles/]] as const) {
      const page = submit(flow, oneOff?.action as string, fields)
      t.equal(page.status, 400, 'shown again to be corrected')
      t.match(page.headers['content-type'], /^text\/html/)
      t.match(page.body, why)
      t.match(page.body, /class="error" role="alert"/)
    }
    t.equal(grantsOf(entra).codes.size, 0, 'no code for a refused one-off user (the others were redeemed)')
  })

  t.test('everything shown is escaped', async t => {
    const evil = '<img src=x onerror=alert(1)>"\'`='
    const entra = new FakeEntra({ user: { name: evil, username: `x${evil}@evil.example`, oid: `o${evil}`, roles: [`R${evil}`] }, users: [{ username: 'b@evil.example', scopes: [evil] }] })
    t.teardown(() => entra.close())
    const flow = start(entra, { client_id: `c${evil}`, scope: `openid api://${API}/s${encodeURIComponent('<b>')}`, login_hint: `h${evil}` })
    // A raw query too, as a browser may send it: quotes and angle brackets unencoded.
    const raw = { ...flow, path: `${flow.path}&extra="><script>alert(2)</script>` }
    for (const page of [get(flow), get(raw), submit(raw, raw.path, { username: evil })]) {
      t.notMatch(page.body, /<img|<script|<b>|onerror=alert\(1\)>/, 'no markup from the request or the options')
      t.notMatch(page.body, /['`]|src=x|"x|"o<|"h</, 'no attribute breaks out (the template has no \' or `)')
    }
    const page = get(flow)
    t.match(page.body, '&#60;img src&#61;x onerror&#61;alert(1)&#62;&#34;&#39;&#96;&#61;', 'the name, escaped')
    t.match(page.body, 'value="h&#60;img', 'the login_hint prefills the one-off username, escaped')
    const [users] = forms(get(raw).body)
    t.equal(users?.action, raw.path, 'the action decodes back to the request')
    t.equal(users?.buttons[0]?.[1], `o${evil}`, 'and the button to the oid')
  })

  t.test('prompt=none signs in the default user (or the login_hint one) with no page; autoSignIn always', async t => {
    const entra = fake(t)
    const silent = start(entra, { prompt: 'none' })
    const tokens = await redeem(silent, get(silent))
    t.match(claimsOf(tokens.access_token as string), { oid: ADA.oid, name: 'Ada Lovelace' })

    const hinted = start(entra, { prompt: 'none', login_hint: 'GRACE.hopper@contoso.example' })
    t.match(claimsOf((await redeem(hinted, get(hinted))).access_token as string), { preferred_username: 'grace.hopper@contoso.example' })

    const stranger = get(start(entra, { prompt: 'none', login_hint: 'nobody@contoso.example' }))
    t.equal(stranger.status, 302)
    const error = new URL(stranger.headers.location as string).searchParams
    t.equal(error.get('error'), 'login_required')
    t.match(error.get('error_description'), /^AADSTS50058: /)
    t.equal(error.get('state'), 'st-1')

    t.equal(get(start(entra, { prompt: 'select_account' })).status, 200, 'select_account shows the page')
    t.equal(get(start(entra, { prompt: 'login' })).status, 200)

    const auto = fake(t, { autoSignIn: true })
    const instant = start(auto)
    const reply = get(instant)
    t.equal(reply.status, 302, 'autoSignIn: redirected at once')
    t.match(claimsOf((await redeem(instant, reply)).access_token as string), { oid: ADA.oid })
    const plain = new FakeEntra({ autoSignIn: true })
    t.teardown(() => plain.close())
    const defaultFlow = start(plain, { scope: 'openid profile' })
    t.match(claimsOf((await redeem(defaultFlow, get(defaultFlow))).id_token as string), { oid: FAKE_USER_ID, name: 'Test User', preferred_username: 'test.user@contoso.example' }, 'with no users configured: Test User')
  })

  t.test('a user who consented to none of the scopes asked for: consent_required, not a token', async t => {
    const entra = fake(t)
    const flow = start(entra, { scope: `openid api://${API}/Files.Read`, prompt: 'none', login_hint: GRACE.username })
    const reply = get(flow)
    const error = new URL(reply.headers.location as string).searchParams
    t.equal(error.get('error'), 'consent_required')
    t.match(error.get('error_description'), /^AADSTS65001: /)
    const page = get(start(entra, { scope: `openid api://${API}/Files.Read` }))
    t.match(page.body, /none of those asked \(consent_required\)/, 'the page says so before the choice')
  })

  t.test('the page and its forms answer loopback peers only; prompt=none and autoSignIn answer anyone', async t => {
    const entra = fake(t)
    const flow = start(entra)
    for (const peer of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) t.equal(get(flow, peer).status, 200, `page for ${peer}`)
    for (const peer of ['203.0.113.7', '::ffff:203.0.113.7', '2001:db8::1', '10.0.0.1']) {
      const page = get(flow, peer)
      t.equal(page.status, 403, `no page for ${peer}`)
      t.match(page.body, /loopback clients only/)
      t.equal(submit(flow, flow.path, { user: ADA.oid }, peer).status, 403, 'nor a sign-in by form')
    }
    t.equal(get(start(entra, { prompt: 'none' }), '203.0.113.7').status, 302)
    t.equal(grantsOf(entra).codes.size, 1)

    // Over the loopback server, the peer is the socket's.
    const server = await startFakeEntraServer({ log: null, user: ADA })
    t.teardown(() => server.close())
    const url = new URL(start(server.entra).path, server.origin)
    const response = await fetch(url)
    t.equal(response.status, 200)
    t.match(await response.text(), /Sign in as Ada Lovelace/)
    const posted = await fetch(url, { method: 'POST', body: new URLSearchParams({ user: ADA.oid }), redirect: 'manual' })
    t.equal(posted.status, 302)
    t.match(posted.headers.get('location'), /^http:\/\/localhost:3000\/\?code=[\w-]{43}&state=st-1$/)
  })

  t.test('misconfigured users fail at construction, naming the option', async t => {
    t.throws(() => new FakeEntra({ user: { username: 'a@b.example' }, users: [{ username: 'A@b.example' }] }), { name: 'TypeError', message: /same username a@b\.example.*oid and username/ })
    t.throws(() => new FakeEntra({ users: [{ username: 'a@b.example', oid: 'x' }, { username: 'c@b.example', oid: 'x' }] }), { name: 'TypeError', message: /same oid x/ })
    const onlyUsers = new FakeEntra({ autoSignIn: true, users: [{ username: 'first@b.example' }, { username: 'second@b.example' }] })
    t.teardown(() => onlyUsers.close())
    const flow = start(onlyUsers, { scope: 'openid' })
    t.match(claimsOf((await redeem(flow, get(flow))).id_token as string), { preferred_username: 'first@b.example', name: 'First' }, 'without `user`, the first of `users` is the default')
  })

  t.test('GET and POST only', async t => {
    const entra = fake(t)
    const reply = entra.handle({ method: 'PUT', url: start(entra).path, headers: {}, body: '' })
    t.equal(reply.status, 400)
    t.same(JSON.parse(reply.body).error_codes, [900561])
  })
})

/**
 * MSAL Node against the in-process fake Entra: MSAL's documented `system.networkClient` sends
 * its requests through the fake's undici dispatcher, so a test needs no socket. Client
 * credentials, then a web app's sign-in (authorization code with PKCE, ID token, client_info
 * account) and a silent refresh, each token accepted by the plugin through `app.inject`.
 */
t.test('MSAL Node', async t => {
  const REDIRECT = 'http://localhost:3000/auth/callback'

  function msal (entra: FakeEntra, clientId: string, clientSecret: string): ConfidentialClientApplication {
    return new ConfidentialClientApplication({
      // The fake's default origin is Entra's own, so the authority is the real one: nothing leaves the process.
      auth: { clientId, clientSecret, authority: entra.authority },
      system: { networkClient: msalNetworkClient(entra) }
    })
  }

  t.test('client credentials with MSAL Node, in process', async t => {
    const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }] })
    const app = await entraApp({ clientId: API, ...entra.pluginOptions() })
    app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async () => ({ ok: true }))
    t.teardown(async () => { await app.close(); await entra.close() })
    const result = await msal(entra, 'daemon', 'secret').acquireTokenByClientCredential({ scopes: [`api://${API}/.default`] })
    t.equal((await app.inject({ url: '/reports', headers: bearer(result?.accessToken ?? '') })).statusCode, 200)
    t.equal(entra.oauthRequests.token, 1)
  })

  t.test('a web app signs the user in with MSAL Node (auth code + PKCE), then refreshes silently', async t => {
    const entra = new FakeEntra({
      autoSignIn: true,
      apis: [{ clientId: API, scopes: ['Files.Read'] }],
      clients: [{ clientId: WEB, secret: 'web-secret', redirectUris: [REDIRECT] }],
      user: { name: 'Ada Lovelace', username: 'ada@contoso.example' }
    })
    const app = await entraApp({ clientId: API, ...entra.pluginOptions() })
    app.get('/files', { onRequest: app.entraAuth({ scopes: ['Files.Read'] }) }, async request => ({ user: request.entraToken?.claims.name }))
    t.teardown(async () => { await app.close(); await entra.close() })

    const web = msal(entra, WEB, 'web-secret')
    const verifier = randomBytes(32).toString('base64url')
    const scopes = [`api://${API}/Files.Read`]
    const url = new URL(await web.getAuthCodeUrl({
      scopes,
      redirectUri: REDIRECT,
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      codeChallengeMethod: 'S256',
      state: 'state-1',
      nonce: 'nonce-1'
    }))
    t.equal(`${url.origin}${url.pathname}`, entra.authorizationEndpoint)
    // The browser's part: follow the authorize URL; the fake signs the test user in and redirects back.
    const signIn = entra.handle({ method: 'GET', url: url.pathname + url.search, headers: {}, body: '' })
    t.equal(signIn.status, 302)
    const callback = new URL(signIn.headers.location as string)
    t.equal(callback.searchParams.get('state'), 'state-1')

    const result = await web.acquireTokenByCode({ code: callback.searchParams.get('code') as string, scopes, redirectUri: REDIRECT, codeVerifier: verifier, state: 'state-1', nonce: 'nonce-1' })
    t.match(result.account, { username: 'ada@contoso.example', name: 'Ada Lovelace', tenantId: entra.tenantId, homeAccountId: `${result.account?.localAccountId ?? ''}.${entra.tenantId}` }, "MSAL's account comes from client_info and the ID token")
    t.equal((result.idTokenClaims as { nonce?: string }).nonce, 'nonce-1', 'the nonce of the authorization request is in the ID token')
    const files = await app.inject({ url: '/files', headers: bearer(result.accessToken) })
    t.equal(files.statusCode, 200)
    t.same(files.json(), { user: 'Ada Lovelace' })

    const refreshed = await web.acquireTokenSilent({ account: result.account!, scopes, forceRefresh: true })
    t.not(refreshed.accessToken, result.accessToken, 'a new access token from the refresh token')
    t.equal((await app.inject({ url: '/files', headers: bearer(refreshed.accessToken) })).statusCode, 200)
    t.equal(entra.oauthRequests.token, 2, 'one code redemption, one refresh')
  })
})

/**
 * No request stops the fake Entra's loopback server: malformed request lines over raw sockets,
 * then seeded random requests to every endpoint. Each gets an answer below 500, and the server
 * keeps serving discovery afterwards.
 */
t.test('fuzz', async t => {
  /** Sends `raw` on a new connection and resolves with everything the server wrote before closing. */
  function exchange (server: FakeEntraServer, raw: string | Buffer): Promise<string> {
    const { hostname, port } = new URL(server.origin)
    return new Promise((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port) })
      const chunks: Buffer[] = []
      // A safety net so that a stuck exchange fails the test instead of waiting for tap's timeout.
      socket.setTimeout(15_000, () => { socket.destroy(new Error(`no answer to ${JSON.stringify(String(raw).slice(0, 200))}`)) })
      socket.on('data', chunk => chunks.push(chunk))
      socket.on('error', reject)
      socket.on('close', () => { resolve(Buffer.concat(chunks).toString('latin1')) })
      socket.end(raw)
    })
  }

  function statusOf (answer: string): number {
    const match = /^HTTP\/1\.1 (\d{3}) /.exec(answer)
    return match === null ? 0 : Number(match[1])
  }

  /** A request with `connection: close` and a correct `content-length`. */
  function http (method: string, target: string, headers: Record<string, string>, body = ''): Buffer {
    const bytes = Buffer.from(body, 'latin1')
    const lines = [`${method} ${target} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
    if (bytes.length > 0 || method === 'POST') lines.push(`content-length: ${bytes.length}`)
    return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), bytes])
  }

  /** mulberry32: a small seeded generator, so that a failing case can be replayed. */
  function random (seed: number): () => number {
    let state = seed >>> 0
    return () => {
      state = (state + 0x6d2b79f5) >>> 0
      let x = Math.imul(state ^ (state >>> 15), 1 | state)
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296
    }
  }

  let rejections = 0
  const onRejection = (): void => { rejections++ }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })

  async function stillServes (t: Test, server: FakeEntraServer): Promise<void> {
    const discovery = await fetch(server.oidcEndpoint)
    t.equal(discovery.status, 200, 'the server still serves discovery')
    await discovery.body?.cancel()
    t.equal(rejections, 0, 'no unhandled rejection')
  }

  t.test('the two reported triggers get 400 and the server keeps serving', async t => {
    const server = await startFakeEntraServer({ apis: [{ clientId: API }], log: null })
    t.teardown(() => server.close())
    const token = new URL(server.tokenEndpoint).pathname
    // A Basic credential that decodes to a malformed percent-escape (URIError in decodeURIComponent).
    const basic = `Basic ${Buffer.from('%E0%A4%A:x').toString('base64')}`
    const form = new URLSearchParams({ grant_type: 'client_credentials', scope: `api://${API}/.default` }).toString()
    const badBasic = await exchange(server, http('POST', token, { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, form))
    t.equal(statusOf(badBasic), 401, 'malformed Basic credentials: invalid_client')
    t.match(badBasic, /"error":"invalid_client"/)
    // The request target that `new URL` refuses (TypeError).
    const badTarget = await exchange(server, 'GET http://[ HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n')
    t.equal(statusOf(badTarget), 400, 'a request target new URL refuses: 400')
    t.match(badTarget, /"error":"invalid_request"/)
    await stillServes(t, server)
  })

  t.test('malformed request lines over raw sockets', async t => {
    const server = await startFakeEntraServer({ apis: [{ clientId: API }], log: null })
    t.teardown(() => server.close())
    const tenant = server.entra.tenantId
    const targets = [
      'http://[', 'http://[::1', '//[', 'http://', 'http:', '%', '/%E0%A4%A', `/${tenant}/oauth2/v2.0/authorize?%E0%A4%A=%ZZ`,
      '*', 'http://a:b@[/', `http://127.0.0.1:99999/${tenant}/oauth2/v2.0/token`, `/${tenant}/oauth2/v2.0/token/../token`,
      `/${tenant}/oauth2/v2.0/authorize?redirect_uri=http://[&client_id=x&response_type=code`,
      `/${tenant}/oauth2/v2.0/authorize?client_id=x&redirect_uri=https://a.example/&response_type=code&code_challenge_method=S256&code_challenge=${'a'.repeat(43)}&scope=%E0`,
      `/%2e%2e/${tenant}/v2.0/.well-known/openid-configuration`, `/${'a'.repeat(8000)}`
    ]
    for (const target of targets) {
      for (const method of ['GET', 'POST', 'OPTIONS', 'PUT', 'DELETE']) {
        const status = statusOf(await exchange(server, http(method, target, { 'content-type': 'application/x-www-form-urlencoded' }, method === 'POST' ? 'grant_type=%E0' : '')))
        t.ok(status >= 200 && status < 500, `${method} ${target.slice(0, 80)}: ${status}`)
      }
    }
    for (const line of ['GET\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', '\x00\x01\x02\r\n\r\n', 'GET /\x7f HTTP/1.1\r\n\r\n', 'POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n']) {
      const status = statusOf(await exchange(server, line))
      t.ok(status === 0 || (status >= 400 && status < 500), `${JSON.stringify(line)}: ${status} (0: closed without an answer)`)
    }
    await stillServes(t, server)
  })

  t.test('seeded random requests to every endpoint get answers below 500', async t => {
    const seed = Number(process.env.FUZZ_SEED ?? 0x5eed)
    t.comment(`seed ${seed} (FUZZ_SEED replays it)`)
    const next = random(seed)
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T
    const junk = (length: number): string => Array.from({ length }, () => String.fromCharCode(Math.floor(next() * 256))).join('')
    const server = await startFakeEntraServer({
      apis: [{ clientId: API, scopes: ['Files.Read'], appRoles: ['Reports.Read.All'] }],
      clients: [{ clientId: 'daemon', secret: 's3cret' }, { clientId: 'spa', redirectUris: ['http://localhost/cb'] }],
      log: null
    })
    t.teardown(() => server.close())
    const tenant = server.entra.tenantId
    const paths = [`/${tenant}/oauth2/v2.0/token`, `/${tenant}/oauth2/v2.0/authorize`, `/${tenant}/v2.0/.well-known/openid-configuration`, `/${tenant}/discovery/v2.0/keys`, '/other/oauth2/v2.0/token', '/']
    const values = ['', 'daemon', 'spa', 's3cret', '%', '%E0%A4%A', '%ZZ', 'client_credentials', 'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'on_behalf_of',
      `api://${API}/.default`, `api://${API}/Files.Read`, `${API}/.default openid offline_access`, 'http://localhost/cb', 'http://[', 'S256', 'a'.repeat(43), 'eyJhbGciOiJSUzI1NiJ9.e30.x']
    const names = ['grant_type', 'client_id', 'client_secret', 'scope', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'assertion', 'requested_token_use', 'response_type', 'code_challenge', 'code_challenge_method', 'state', 'nonce', 'response_mode', 'client_info']
    // Header values may carry any byte but controls (RFC 9110 §5.5: obs-text included).
    const headerSafe = (value: string): string => Array.from(value).filter(c => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f).join('')
    const field = (): string => `${pick(names)}=${next() < 0.2 ? encodeURIComponent(junk(4)) : next() < 0.5 ? pick(values) : encodeURIComponent(pick(values))}`
    const statuses = new Map<number, number>()
    for (let i = 0; i < 300; i++) {
      const method = pick(['GET', 'POST', 'POST', 'OPTIONS', 'HEAD', 'PATCH'])
      const query = next() < 0.5 ? `?${Array.from({ length: Math.floor(next() * 8) }, field).join('&')}` : ''
      const body = next() < 0.7 ? Array.from({ length: Math.floor(next() * 8) }, field).join('&') : junk(Math.floor(next() * 64))
      const headers: Record<string, string> = {}
      if (next() < 0.8) headers['content-type'] = pick(['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8', 'application/json', 'text/plain', ''])
      if (next() < 0.4) {
        const credentials = next() < 0.5 ? `${pick(values)}:${pick(values)}` : junk(12)
        headers.authorization = pick([`Basic ${Buffer.from(credentials, 'latin1').toString('base64')}`, `Basic ${headerSafe(junk(6))}`, 'Basic', `Bearer ${pick(values)}`])
      }
      if (next() < 0.3) headers['access-control-request-headers'] = pick(['authorization', 'content-type, authorization', headerSafe(junk(8))])
      if (next() < 0.3) headers['client-request-id'] = pick(['abc-123', headerSafe(junk(10))])
      const target = `${pick(paths)}${query}`
      const status = statusOf(await exchange(server, http(method, target, headers, method === 'GET' || method === 'HEAD' ? '' : body)))
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
      if (!(status >= 200 && status < 500)) t.fail(`${method} ${target} → ${status}`, { headers, body })
    }
    t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`)
    t.ok((statuses.get(200) ?? 0) > 0, 'some requests are answered 200')
    t.ok([400, 401].some(status => (statuses.get(status) ?? 0) > 0), 'and some are refused')
    await stillServes(t, server)
  })
})
