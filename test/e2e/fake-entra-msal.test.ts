/**
 * Microsoft's own client against the fake Entra: `fastify-entra-auth fake-entra` runs as a
 * process on loopback; @azure/msal-node's ConfidentialClientApplication gets an app-only token
 * from it over http with acquireTokenByClientCredential, configured offline as docs/fake-entra.md's
 * "Run your clients against the fake Entra" says; the example API (examples/app.js) takes it.
 * Also: the command's output, curl-equivalent request, usage errors and the loopback refusal, and
 * the token request that `npm start` prints.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { ConfidentialClientApplication } from '@azure/msal-node'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import type { EntraAuthOptions } from '../../src/index.js'
import { ensureBuilt, ROOT } from '../helpers/build.js'

interface ExampleModule { buildApp: (auth: EntraAuthOptions, fastifyOptions?: object) => Promise<FastifyInstance> }

/** The example API's client ID (examples/start.js). */
const API = '00000000-0000-0000-0000-000000000001'
const STARTUP_TIMEOUT = 30_000

// Several processes per subtest: generous on a loaded 2-core CI machine (nothing here asserts on time).
t.setTimeout(300_000)
await ensureBuilt(['dist/index.js', 'dist/cli.js', 'dist/fake-entra-cli.js', 'dist/testing/index.js'])
const example = await import(new URL('../../examples/app.js', import.meta.url).href) as ExampleModule

interface Running { child: ChildProcess, output: () => string, exited: Promise<number | null> }

function run (t: Test, args: string[]): Running {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'fake-entra', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, output: () => output, exited }
}

/** Starts the command and resolves with its printed lines once it printed the curl command. */
async function start (t: Test, args: string[]): Promise<Running & { lines: Record<string, string>, curl: string }> {
  const running = run(t, args)
  let exited = false
  running.exited.then(() => { exited = true }, () => {})
  const deadline = Date.now() + STARTUP_TIMEOUT
  while (!/^curl .*$/m.test(running.output())) {
    if (exited) throw new Error(`fake-entra exited:\n${running.output()}`)
    if (Date.now() > deadline) throw new Error(`fake-entra printed no curl command within ${STARTUP_TIMEOUT} ms:\n${running.output()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const lines: Record<string, string> = {}
  for (const match of running.output().matchAll(/^(authority|discovery|token endpoint|issuer): (\S+)$/gm)) lines[match[1] as string] = match[2] as string
  return { ...running, lines, curl: (/^curl .*$/m.exec(running.output()) as RegExpExecArray)[0] }
}

/**
 * MSAL Node, configured for the fake: an Entra-shaped `https` authority (MSAL refuses http ones),
 * the fake's discovery document as `authorityMetadata` (its token endpoint is on loopback http),
 * and `cloudDiscoveryMetadata` naming the authority host, so MSAL makes no other request.
 */
async function msalClient (discoveryUrl: string, clientId: string, clientSecret: string): Promise<ConfidentialClientApplication> {
  const discovery = await (await fetch(discoveryUrl)).text()
  const tenantId = new URL(discoveryUrl).pathname.split('/')[1] as string
  return new ConfidentialClientApplication({
    auth: {
      clientId,
      clientSecret,
      authority: `https://login.microsoftonline.com/${tenantId}`,
      authorityMetadata: discovery,
      cloudDiscoveryMetadata: JSON.stringify({
        tenant_discovery_endpoint: discoveryUrl,
        metadata: [{ preferred_network: 'login.microsoftonline.com', preferred_cache: 'login.microsoftonline.com', aliases: ['login.microsoftonline.com'] }]
      })
    }
  })
}

t.test('MSAL Node client credentials → the example API: 200 with the app role, 403 without', async t => {
  const [granted, other] = await Promise.all([
    start(t, ['--port', '0', '--api', API, '--app-roles', 'Reports.Read.All']),
    start(t, ['--port', '0', '--api', API, '--app-roles', 'Reports.Export'])
  ])
  t.match(granted.output(), /for development and tests only/, 'says it is a fake')
  t.match(granted.lines.authority, /^http:\/\/127\.0\.0\.1:\d+\/[\da-f-]{36}$/)
  t.equal(granted.lines.discovery, `${granted.lines.authority}/v2.0/.well-known/openid-configuration`)

  const app = await example.buildApp({ clientId: API, oidcEndpoint: granted.lines.discovery as string })
  const otherApp = await example.buildApp({ clientId: API, oidcEndpoint: other.lines.discovery as string })
  t.teardown(async () => { await app.close(); await otherApp.close() })

  const daemon = await msalClient(granted.lines.discovery as string, 'b5a1e6a4-1111-4aaa-8bbb-000000000d01', 'any secret')
  const result = await daemon.acquireTokenByClientCredential({ scopes: [`api://${API}/.default`] })
  t.ok(result?.accessToken, 'MSAL got a token')
  t.equal(result?.tokenType, 'Bearer')
  const reports = await app.inject({ url: '/reports', headers: { authorization: `Bearer ${result?.accessToken ?? ''}` } })
  t.equal(reports.statusCode, 200)
  t.equal(reports.json().requestedBy, 'b5a1e6a4-1111-4aaa-8bbb-000000000d01')
  const me = await app.inject({ url: '/me', headers: { authorization: `Bearer ${result?.accessToken ?? ''}` } })
  t.match(me.json(), { isAppOnly: true, version: '2.0' })
  const cached = await daemon.acquireTokenByClientCredential({ scopes: [`api://${API}/.default`] })
  t.equal(cached?.accessToken, result?.accessToken, "MSAL's cache serves the second call")

  const lacking = await msalClient(other.lines.discovery as string, 'b5a1e6a4-1111-4aaa-8bbb-000000000d02', 'any secret')
  const lackingToken = (await lacking.acquireTokenByClientCredential({ scopes: [`api://${API}/.default`] }))?.accessToken ?? ''
  const refused = await otherApp.inject({ url: '/reports', headers: { authorization: `Bearer ${lackingToken}` } })
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().type, 'auth_token_insufficient_scopes')
  // RFC 6750 §3.1: the challenge of a 403 names the error and a scope that would be enough, as a
  // client requests it: app roles come with .default.
  t.match(refused.headers['www-authenticate'], /^Bearer (?:\S.*, )?error="insufficient_scope"/)
  t.ok(String(refused.headers['www-authenticate']).endsWith(`, scope="api://${API}/.default"`))
  t.match(refused.json().detail, /"Reports\.Read\.All" \(app role\)/)

  granted.child.kill('SIGINT')
  other.child.kill('SIGTERM')
  t.equal(await granted.exited, 0, 'Ctrl-C stops it cleanly')
  t.equal(await other.exited, 0, 'SIGTERM too')
})

t.test('the printed request gets a token; configured clients are enforced', async t => {
  const running = await start(t, ['--port', '0', '--api', API, '--app-roles', 'Reports.Read.All', '--client', 'daemon:s3cret'])
  // The printed curl command, replayed with fetch: `--data-urlencode name=value` fields and the URL.
  const fields = [...running.curl.matchAll(/--data-urlencode (\S+)/g)].map(match => (match[1] as string).split('=', 2) as [string, string])
  const url = (/(http:\/\/\S+)$/.exec(running.curl) as RegExpExecArray)[1] as string
  t.equal(url, running.lines['token endpoint'])
  t.same(Object.fromEntries(fields), { grant_type: 'client_credentials', client_id: 'daemon', client_secret: 's3cret', scope: `api://${API}/.default` })
  const ok = await fetch(url, { method: 'POST', body: new URLSearchParams(fields) })
  t.equal(ok.status, 200)
  const app = await example.buildApp({ clientId: API, oidcEndpoint: running.lines.discovery as string })
  t.teardown(() => app.close())
  const { access_token: token } = await ok.json() as { access_token: string }
  t.equal((await app.inject({ url: '/reports', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)

  const wrong = await fetch(url, { method: 'POST', body: new URLSearchParams({ ...Object.fromEntries(fields), client_secret: 'guess' }) })
  t.equal(wrong.status, 401)
  t.match(await wrong.json(), { error: 'invalid_client', error_codes: [7000215] })
  const daemon = await msalClient(running.lines.discovery as string, 'daemon', 'guess')
  t.match(await daemon.acquireTokenByClientCredential({ scopes: [`api://${API}/.default`] }).catch((err: unknown) => err), { errorCode: 'invalid_client' }, 'MSAL reports the refusal')
  running.child.kill('SIGINT')
  t.equal(await running.exited, 0)
})

t.test('--user (repeatable) lists test users on the sign-in page; --auto-sign-in skips it', async t => {
  const [page, auto] = await Promise.all([
    start(t, ['--port', '0', '--api', API, '--user', 'ada.lovelace@contoso.example:Admin,Reports.Read', '--user', 'grace@contoso.example']),
    start(t, ['--port', '0', '--api', API, '--user', 'ada.lovelace@contoso.example', '--user-roles', 'Admin', '--auto-sign-in'])
  ])
  t.match(page.output(), /lists the test users[^\n]*\n {2}ada\.lovelace@contoso\.example \(app roles: Admin, Reports\.Read\)\n {2}grace@contoso\.example\n/)
  t.match(auto.output(), /the default user, at once \(--auto-sign-in\)\.\n {2}ada\.lovelace@contoso\.example \(app roles: Admin\)\n/)
  const query = new URLSearchParams({ client_id: 'my-spa', response_type: 'code', redirect_uri: 'http://localhost:5173/', scope: `openid api://${API}/access_as_user`, code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' })
  const html = await (await fetch(`${page.lines.authority as string}/oauth2/v2.0/authorize?${query.toString()}`)).text()
  t.match(html, /Sign in as Ada Lovelace<\/button>[\s\S]*Sign in as Grace<\/button>/)
  t.match(html, /<code>Admin<\/code> <code>Reports\.Read<\/code>/)
  const instant = await fetch(`${auto.lines.authority as string}/oauth2/v2.0/authorize?${query.toString()}`, { redirect: 'manual' })
  t.equal(instant.status, 302)
  t.match(instant.headers.get('location'), /^http:\/\/localhost:5173\/\?code=/)
  page.child.kill('SIGINT')
  auto.child.kill('SIGINT')
  t.equal(await page.exited, 0)
  t.equal(await auto.exited, 0)
})

t.test('usage errors exit 2; a non-loopback host is refused unless allowed', async t => {
  const usage = [['--port', 'x'], ['--port', '70000'], ['--app-roles', 'A'], ['--token-version', '3'], ['--tenant-id', 'contoso'], ['--bogus'], ['--user', 'ada'], ['--user', 'a@b.example:A', '--user-roles', 'B']]
  const [refused, help, ...runs] = [run(t, ['--host', '0.0.0.0']), run(t, ['--help']), ...usage.map(args => run(t, args))]
  for (const [i, running] of runs.entries()) {
    t.equal(await running.exited, 2, (usage[i] as string[]).join(' '))
    t.match(running.output(), /fastify-entra-auth fake-entra: /)
  }
  t.equal(await refused.exited, 2)
  t.match(refused.output(), /not a loopback address.*--allow-non-loopback/s)
  const appIdUri = run(t, ['--api', `api://${API}`])
  t.equal(await appIdUri.exited, 2, 'an App ID URI as --api is refused at start')
  t.match(appIdUri.output(), `fastify-entra-auth fake-entra: --api must be the application (client) ID, not the App ID URI: use '${API}'`)
  t.equal(await help.exited, 0)
  t.match(help.output(), /--allow-non-loopback/)
})

t.test('npm start prints a token request for its fake Entra that works', async t => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ENTRA_')))
  const child = spawn(process.execPath, ['examples/start.js'], { cwd: ROOT, env: { ...clean, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const deadline = Date.now() + STARTUP_TIMEOUT
  while (!output.includes('Press Ctrl-C')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`start.js did not start:\n${output}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const tokenLine = (/^ {2}TOKEN=\$\(curl -s (.+) \| node -p .+\)$/m.exec(output) as RegExpExecArray)[1] as string
  const fields = [...tokenLine.matchAll(/--data-urlencode (\S+)/g)].map(match => (match[1] as string).split('=', 2) as [string, string])
  const tokenEndpoint = (/(http:\/\/127\.0\.0\.1:\d+\/\S+\/oauth2\/v2\.0\/token)$/.exec(tokenLine) as RegExpExecArray)[1] as string
  const reports = (/^ {2}curl -i -H "Authorization: Bearer \$TOKEN" (http:\/\/\S+\/reports)$/m.exec(output) as RegExpExecArray)[1] as string
  const reply = await fetch(tokenEndpoint, { method: 'POST', body: new URLSearchParams(fields) })
  t.equal(reply.status, 200)
  const { access_token: token } = await reply.json() as { access_token: string }
  const response = await fetch(reports, { headers: { authorization: `Bearer ${token}` } })
  t.equal(response.status, 200, 'the token from the printed request opens /reports')
  t.match(await response.json(), { reports: ['usage-2025-q1.csv'] })
  child.kill('SIGINT')
})
