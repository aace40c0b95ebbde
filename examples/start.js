/**
 * `npm start`: runs the example API (app.js) on 127.0.0.1 and prints curl commands for it.
 *
 * - No ENTRA_* variables: an embedded fake Entra ID (fake-entra-server.js) serves discovery, keys
 *   and a token endpoint on loopback, and every printed command carries a token it signed; the
 *   last ones get a token from its token endpoint with curl. A downstream example API
 *   (downstream.js) runs beside it: the example API's /data calls it on the user's behalf. At
 *   /spa/, a single-page app (spa.js) signs in with MSAL Browser on the fake's sign-in page and
 *   calls the example API. Works offline.
 * - ENTRA_CLIENT_ID with ENTRA_TENANT (or ENTRA_OIDC_ENDPOINT; ENTRA_AUTHORITY_HOST for other
 *   clouds): the same API is protected by your real tenant.
 *
 * PORT picks the port (default 3000; a free one is used when it is taken). LOG_LEVEL sets
 * Fastify's log level (default warn). Ctrl-C stops everything.
 */
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp, routes } from './app.js'
import { buildDownstreamApp } from './downstream.js'
import { startFakeEntra } from './fake-entra-server.js'
import { spa } from './spa.js'

const FAKE_CLIENT_ID = '00000000-0000-0000-0000-000000000001'
/** The downstream example API (downstream.js) that /data calls on the user's behalf. */
const DOWNSTREAM_CLIENT_ID = '00000000-0000-0000-0000-000000000002'
/** The example SPA's client ID (a public client: PKCE, no secret). */
const SPA_CLIENT_ID = '00000000-0000-0000-0000-00000000005a'
/**
 * The fake's test users, listed on its sign-in page: Ada (the default user) has consented to both
 * scopes of the API and holds its Admin app role; Grace consented to `access_as_user` only.
 */
const TEST_USERS = {
  user: { name: 'Ada Lovelace', username: 'ada@contoso.example', roles: ['Admin'] },
  users: [{ name: 'Grace Hopper', username: 'grace@contoso.example', scopes: ['access_as_user'] }]
}
/** Another API of the same tenant: its tokens must not work here. */
const OTHER_API_ID = '00000000-0000-0000-0000-0000000000ff'

const env = process.env

/**
 * How to run this checkout's token debugger from the current directory. Not `npx fastify-entra-auth`:
 * that finds the command only where the package is installed as a dependency; in a clone of the
 * package itself npx would look the name up in the npm registry instead.
 */
function inspectCommand () {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
  const fromHere = relative(process.cwd(), cli)
  const path = fromHere.startsWith('..') ? cli : fromHere
  return `node ${/\s/.test(path) ? JSON.stringify(path) : path} inspect`
}

function fail (message) {
  console.error(`examples/start.js: ${message}`)
  process.exit(2)
}

/** The plugin options for real Entra, or undefined when no ENTRA_* variable is set. */
function realEntraOptions () {
  const { ENTRA_CLIENT_ID: clientId, ENTRA_TENANT: tenant, ENTRA_OIDC_ENDPOINT: oidcEndpoint, ENTRA_AUTHORITY_HOST: authorityHost } = env
  if (clientId === undefined && tenant === undefined && oidcEndpoint === undefined) return undefined
  if (!clientId) fail('set ENTRA_CLIENT_ID (the API\'s Application (client) ID) together with ENTRA_TENANT or ENTRA_OIDC_ENDPOINT')
  if (!tenant === !oidcEndpoint) fail('set exactly one of ENTRA_TENANT and ENTRA_OIDC_ENDPOINT')
  return tenant
    ? { clientId, tenant, ...(authorityHost ? { authorityHost } : {}) }
    : { clientId, oidcEndpoint }
}

function portOf (value) {
  if (value === undefined || value === '') return 3000
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT must be a port number, got '${value}'`)
  return port
}

/** Listens on `port`, or on a free port when it is taken. */
async function listen (app, port) {
  try {
    return await app.listen({ host: '127.0.0.1', port })
  } catch (err) {
    if (err.code !== 'EADDRINUSE') throw err
    const address = await app.listen({ host: '127.0.0.1', port: 0 })
    console.log(`(port ${port} is taken; using ${new URL(address).port})`)
    return address
  }
}

/** A ready-to-paste curl command; `-i` shows the status and `WWW-Authenticate` of failures. */
function curl (base, path, token, showHeaders) {
  const flags = showHeaders ? '-i ' : ''
  return token === undefined ? `curl ${flags}${base}${path}` : `curl ${flags}-H 'Authorization: Bearer ${token}' ${base}${path}`
}

function printExample (base, { path, token, why, expect }) {
  console.log(`  # ${path}: ${why} → ${expect}`)
  console.log(`  ${curl(base, path, token, expect !== '200')}`)
}

/** Tokens signed by the fake Entra, one per example. */
function mintTokens (entra, clientId) {
  const user = entra.client(clientId, 'v2')
  const now = Math.floor(Date.now() / 1000)
  return {
    user: user.generate({ scp: 'Files.Read', roles: false }),
    userV1: entra.client(clientId, 'v1').generate({ scp: 'Files.Read', roles: false }),
    admin: user.generate({ scp: 'Files.Read', roles: ['Admin'] }),
    app: entra.client(clientId, 'app').generate({ roles: ['Reports.Read.All'] }),
    otherApi: entra.client(OTHER_API_ID, 'v2').generate({ scp: 'Files.Read', roles: false }),
    expired: user.generate({ scp: 'Files.Read', roles: false, iat: now - 7200, nbf: now - 7200, exp: now - 3600 })
  }
}

/** The fake's token endpoint, used as a daemon would (client credentials), ready to paste. */
function printTokenRequest (base, entra, clientId) {
  const form = ['grant_type=client_credentials', 'client_id=my-daemon', 'client_secret=any-secret', `scope=api://${clientId}/.default`]
  const request = `curl -s ${form.map(field => `--data-urlencode ${field}`).join(' ')} ${entra.tokenEndpoint}`
  console.log('Get a token from the fake Entra yourself, as a daemon would (client credentials; any client ID and')
  console.log('secret work), then call the API with it. MSAL and other clients: authority and setup in docs/fake-entra.md,')
  console.log('"Run your clients against the fake Entra".')
  console.log(`  authority ${entra.authority}`)
  console.log(`  TOKEN=$(${request} | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token')`)
  console.log(`  curl -i -H "Authorization: Bearer $TOKEN" ${base}/reports`)
}

function printFake (base, entra, clientId) {
  const tokens = mintTokens(entra, clientId)
  const until = new Date(Date.now() + 3600 * 1000).toISOString().slice(11, 16)
  console.log(`Protected by an embedded fake Entra ID (no network): client ID ${clientId}`)
  console.log(`  issuer    ${entra.issuer}`)
  console.log(`  discovery ${entra.oidcEndpoint}`)
  console.log(`Tokens below were signed by its key and are valid until ${until} UTC; restarting makes a new key.`)
  console.log('')
  console.log('These work (200):')
  const works = [
    { path: '/', token: undefined, why: 'open route, no token needed' },
    { path: '/me', token: tokens.user, why: 'who is calling (v2.0 user token)' },
    { path: '/me', token: tokens.userV1, why: 'a v1.0 user token works too' },
    { path: '/files', token: tokens.user, why: "user token with delegated scope 'Files.Read'" },
    { path: '/reports', token: tokens.app, why: "app-only token with app role 'Reports.Read.All'" },
    { path: '/admin', token: tokens.admin, why: "user token with scope 'Files.Read' and app role 'Admin'" },
    { path: '/data', token: tokens.user, why: 'the API calls the downstream API with an on-behalf-of token for this user' }
  ]
  for (const example of works) printExample(base, { ...example, expect: '200' })
  console.log('')
  console.log('These fail, and say why (application/problem+json):')
  const fails = [
    { path: '/me', token: undefined, why: 'no token', expect: '401 auth_header_missing' },
    { path: '/files', token: tokens.app, why: "app-only token has no delegated scope 'Files.Read'", expect: '403 auth_token_insufficient_scopes' },
    { path: '/admin', token: tokens.user, why: "user token lacks the app role 'Admin'", expect: '403 auth_token_insufficient_scopes' },
    { path: '/me', token: tokens.otherApi, why: 'token issued for another API', expect: '401 auth_token_audience_invalid' },
    { path: '/me', token: tokens.expired, why: 'token expired an hour ago', expect: '401 auth_token_expired' }
  ]
  for (const example of fails) printExample(base, example)
  console.log('')
  console.log('Debug a token step by step (while this runs):')
  console.log(`  ${inspectCommand()} '${tokens.expired}' --client-id ${clientId} --oidc-endpoint ${entra.oidcEndpoint}`)
  console.log('')
  printTokenRequest(base, entra, clientId)
}

function printReal (base, options) {
  const authority = options.tenant ? `tenant ${options.tenant}` : options.oidcEndpoint
  console.log(`Protected by Microsoft Entra ID: client ID ${options.clientId}, ${authority}`)
  console.log('')
  console.log('Routes:')
  for (const { path, needs } of routes) console.log(`  ${(base + path).padEnd(base.length + 10)} needs ${needs}`)
  console.log('')
  console.log('Get an access token for this API (e.g. with the Azure CLI, once it may request one), then call it:')
  console.log(`  TOKEN=$(az account get-access-token --scope api://${options.clientId}/.default --query accessToken -o tsv)`)
  console.log(`  curl -i -H "Authorization: Bearer $TOKEN" ${base}/me`)
  console.log('Debug a token step by step:')
  const where = options.tenant ? `--tenant ${options.tenant}${options.authorityHost ? ` --authority-host ${options.authorityHost}` : ''}` : `--oidc-endpoint ${options.oidcEndpoint}`
  console.log(`  ${inspectCommand()} "$TOKEN" --client-id ${options.clientId} ${where}`)
}

const real = realEntraOptions()
const port = portOf(env.PORT)
// The fake's token endpoint grants app-only tokens for this API the app role that /reports needs.
const fake = real === undefined
  ? await startFakeEntra({ apis: [{ clientId: FAKE_CLIENT_ID, appRoles: ['Reports.Read.All'], scopes: ['access_as_user', 'Files.Read'] }, { clientId: DOWNSTREAM_CLIENT_ID, scopes: ['Data.Read'] }], ...TEST_USERS })
  : undefined
const auth = real ?? { clientId: FAKE_CLIENT_ID, oidcEndpoint: fake.oidcEndpoint }
// With the fake: a second API, called by /data on the user's behalf (the fake takes any client secret).
const downstreamApp = fake === undefined ? undefined : await buildDownstreamApp({ clientId: DOWNSTREAM_CLIENT_ID, oidcEndpoint: fake.oidcEndpoint }, { logger: { level: env.LOG_LEVEL ?? 'warn' } })
const downstream = downstreamApp === undefined
  ? undefined
  : { url: (await downstreamApp.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, ''), tokenEndpoint: fake.tokenEndpoint, clientSecret: 'example-api-secret', scope: `api://${DOWNSTREAM_CLIENT_ID}/Data.Read` }
const app = await buildApp(auth, { logger: { level: env.LOG_LEVEL ?? 'warn' } }, downstream)
if (fake !== undefined) {
  await app.register(spa, {
    prefix: '/spa',
    clientId: SPA_CLIENT_ID,
    authority: `https://login.microsoftonline.com/${fake.entra.tenantId}`,
    discovery: fake.oidcEndpoint,
    scopes: [`api://${FAKE_CLIENT_ID}/access_as_user`, `api://${FAKE_CLIENT_ID}/Files.Read`]
  })
}

let closing = false
async function shutdown (signal) {
  if (closing) {
    console.log(`${signal} again: exiting now`)
    process.exit(1)
  }
  closing = true
  console.log(`\n${signal}: shutting down`)
  // Nothing should keep the process alive after this; if something does, don't hang the terminal.
  setTimeout(() => process.exit(0), 5000).unref()
  await app.close()
  await downstreamApp?.close()
  await fake?.close()
}
process.on('SIGINT', () => { shutdown('SIGINT').catch(err => { console.error(err); process.exit(1) }) })
process.on('SIGTERM', () => { shutdown('SIGTERM').catch(err => { console.error(err); process.exit(1) }) })

const base = (await listen(app, port)).replace(/\/$/, '')
console.log(`fastify-entra-auth example API on ${base}`)
if (downstream !== undefined) console.log(`downstream example API on ${downstream.url} (client ID ${DOWNSTREAM_CLIENT_ID}): /data calls it on the user's behalf`)
if (fake !== undefined) {
  console.log(`Single-page app (MSAL Browser): ${base}/spa/`)
  console.log("  sign in on the fake Entra's page as Ada Lovelace (scopes access_as_user Files.Read, app role Admin),")
  console.log('  Grace Hopper (access_as_user only: /files answers 403) or anyone you type in; then call the routes.')
  console.log('')
  printFake(base, fake.entra, auth.clientId)
} else {
  printReal(base, real)
}
console.log('')
console.log('Press Ctrl-C to stop.')
