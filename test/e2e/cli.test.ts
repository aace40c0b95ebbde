/**
 * The built token debugger as a user runs it: `node dist/cli.js inspect …` as a process, on a real
 * Entra token (test/fixtures/entra, vector 04), against a loopback identity provider serving that
 * token's real JWKS. The same checks in-process are in test/inspect.test.ts.
 */
import t from 'tap'
import type { InspectReport } from '../../src/inspect/validate.js'
import { ensureBuilt, loopbackEntra, ROOT, runCli } from '../helpers/build.js'
import { readFixture, readJsonFixture } from '../helpers/fixtures.js'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

// Generous: spawns processes and may build dist/ first (see helpers/build.ts).
t.setTimeout(180_000)

const V04 = {
  token: readFixture('entra', '04-v2-delegated-access-token.navikt.jwt'),
  jwks: readJsonFixture('entra', 'jwks-common-v2-2024-06-18.panva-wellknown.json'),
  tenantId: '966ac572-f5b7-4bbe-aa88-c76419c0f851',
  clientId: 'bff62dcb-88dc-4a13-9e26-1cbffb96ec64',
  at: 1718609997
}

t.test('the built CLI as a process', async t => {
  await ensureBuilt(['dist/cli.js', 'dist/inspect/validate.js', 'dist/testing/index.js'])

  const cli = runCli

  await t.test('decoding only', async t => {
    const decoded = await cli(['inspect', V04.token])
    t.equal(decoded.code, 0)
    t.match(decoded.stdout, 'Entra v2.0 delegated (user) access token')
    t.match(decoded.stdout, '"NAVident": "Z993298"')
    const stdin = await cli(['inspect', '-'], `Bearer ${V04.token}\n`)
    t.equal(stdin.code, 0, 'token from standard input')
    t.match(stdin.stdout, 'delegated')
    t.equal((await cli(['inspect', 'garbage'])).code, 1)
  })

  await t.test('usage errors exit 2', async t => {
    for (const args of [[], ['inspect', V04.token, '--bogus'], ['inspect', V04.token, '--client-id', 'x'],
      ['inspect', V04.token, '--at', '1718609997'], ['inspect', V04.token, '--client-id', 'x', '--tenant', 'not a tenant!']]) {
      const run = await cli(args)
      t.equal(run.code, 2, args.slice(2).join(' ') || args.join(' ') || '(no arguments)')
      t.match(run.stderr, /\S/)
    }
    const help = await cli(['--help'])
    t.equal(help.code, 0)
    t.match(help.stdout, /^Usage: fastify-entra-auth inspect/)
  })

  await t.test('validating against a loopback identity provider', async t => {
    const oidcEndpoint = await loopbackEntra(t, V04.tenantId, V04.jwks)
    const validate = ['inspect', V04.token, '--client-id', V04.clientId, '--oidc-endpoint', oidcEndpoint]

    const valid = await cli([...validate, '--at', String(V04.at)])
    t.equal(valid.code, 0, valid.stderr)
    t.match(valid.stdout, /^ {2}pass {2}signature/m)
    t.match(valid.stdout, /^VALID: user 799a132a-93c8-427e-92f7-08cb220c879a of tenant 966ac572/m)

    const expired = await cli(validate)
    t.equal(expired.code, 1)
    t.match(expired.stdout, /^ {2}FAIL {2}exp .*\[auth_token_expired\]$/m)
    t.match(expired.stdout, /^INVALID: auth_token_expired \(401 Token expired\)$/m)

    const noScope = await cli([...validate, '--at', String(V04.at), '--scope', 'Files.Read', '--json'])
    t.equal(noScope.code, 1)
    const json = JSON.parse(noScope.stdout) as InspectReport
    t.equal(json.validation?.problem?.type, 'auth_token_insufficient_scopes')
    t.equal(json.token?.kind, 'delegated')

    // The object form: --scope matches 'scp' only, --role 'roles' only; --app-only refuses users.
    const at = ['--at', String(V04.at), '--json']
    const scp = await cli([...validate, ...at, '--scope', 'defaultaccess', '--role', 'Reports.Read.All'])
    t.equal(scp.code, 0, 'the delegated scope covers the route')
    const asRole = await cli([...validate, ...at, '--role', 'defaultaccess'])
    t.equal(asRole.code, 1, 'a role alternative is not met by a delegated scope of that name')
    const appOnly = await cli([...validate, ...at, '--role', 'Reports.Read.All', '--app-only'])
    t.equal(appOnly.code, 1)
    const refused = JSON.parse(appOnly.stdout) as InspectReport
    t.equal(refused.validation?.problem?.type, 'auth_token_insufficient_scopes')
    t.match(refused.validation?.problem?.detail, /application/i, 'the detail says the route is for applications')
    const bare = await cli([...validate, '--app-only'])
    t.equal(bare.code, 2, '--app-only without --role is a usage error')
    t.match(bare.stderr, /--app-only needs/)
    t.equal((await cli([...validate, '--scope', 'A', '--app-only', '--role', 'B'])).code, 2, 'app-only with delegated scopes is refused as the plugin refuses it')
  })
})

t.setTimeout(180_000)

const exp = (JSON.parse(Buffer.from(V04.token.trim().split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp

const cli = runCli

/** Anything a terminal would act on, except the program's own line feeds. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

t.test('the built CLI, hardened', async t => {
  await ensureBuilt(['dist/cli.js', 'dist/inspect/validate.js', 'dist/inspect/terminal.js', 'dist/testing/index.js'])

  await t.test('--version prints the package version', async t => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    for (const flag of ['--version', '-v']) {
      const run = await cli([flag])
      t.equal(run.code, 0)
      t.equal(run.stdout, `${version}\n`)
    }
  })

  await t.test('exit codes: 1 invalid, 2 usage, 3 provider unreachable', async t => {
    t.equal((await cli(['inspect', 'garbage'])).code, 1)
    t.equal((await cli(['inspect', V04.token, '--clock-tolerance', '5s', '--client-id', V04.clientId, '--tenant', V04.tenantId])).code, 2)
    const unreachable = await cli(['inspect', V04.token, '--client-id', V04.clientId, '--oidc-endpoint', 'http://127.0.0.1:1/.well-known/openid-configuration'])
    t.equal(unreachable.code, 3, unreachable.stderr)
    t.match(unreachable.stdout, /^NO VERDICT: auth_oidc_error/m)
  })

  await t.test('--clock-tolerance is in milliseconds, as the plugin option', async t => {
    const oidcEndpoint = await loopbackEntra(t, V04.tenantId, V04.jwks)
    // Judged 30 s after it expired.
    const validate = ['inspect', V04.token, '--client-id', V04.clientId, '--oidc-endpoint', oidcEndpoint, '--at', String(exp + 30)]
    const lenient = await cli([...validate, '--clock-tolerance', '60000'])
    t.equal(lenient.code, 0, `60000 ms covers 30 s: ${lenient.stdout}`)
    t.match(lenient.stdout, /tolerance 60000 ms/)
    const strict = await cli([...validate, '--clock-tolerance', '60'])
    t.equal(strict.code, 1, '60 ms does not')
    t.match(strict.stdout, /^INVALID: auth_token_expired/m)
  })

  await t.test('a hostile token cannot drive the terminal or fake the verdict', async t => {
    const segment = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')
    const hostile = [
      segment({ alg: 'RS256', kid: '\u001b[2J\u001b[H\u001b[32mVALID\u001b[0m', typ: '\u009b31m' }),
      segment({ ver: '2.0', sub: '\nVALID: user admin of tenant contoso\n', name: '\u001b]52;c;ZXZpbA==\u0007 \u202eevil\u202c', oid: '\u2028x' }),
      'c2ln'
    ].join('.')
    for (const args of [['inspect', hostile], ['inspect', hostile, '--json'], ['inspect', hostile, '--client-id', V04.clientId, '--oidc-endpoint', 'http://127.0.0.1:1/.well-known/openid-configuration']]) {
      const run = await cli(args)
      t.notMatch(run.stdout, UNPRINTABLE, `${args.slice(2).join(' ') || 'decode'}: nothing for the terminal to act on`)
      t.notMatch(run.stderr, UNPRINTABLE)
      t.notMatch(run.stdout, /^VALID/m, 'no fake verdict line')
      t.match(run.stdout, /\\u001b/, 'the escape is shown')
    }
  })
})

t.test('the package ships no source maps pointing at sources it does not ship', async t => {
  await ensureBuilt(['dist/index.js'])
  const { execFile } = await import('node:child_process')
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: ROOT }, (err, out) => { if (err === null) resolve(out); else reject(err) })
  })
  const [packed] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
  const files = (packed?.files ?? []).map(file => file.path)
  t.ok(files.includes('dist/index.js'))
  t.same(files.filter(file => file.endsWith('.map')), [], 'no .js.map or .d.ts.map')
  for (const file of files.filter(file => /\.(js|d\.ts)$/.test(file))) {
    const text = readFileSync(join(ROOT, file), 'utf8')
    const reference = /\/\/# sourceMappingURL=(\S+)/.exec(text)?.[1]
    if (reference !== undefined) t.fail(`${file} refers to ${reference}, which is not shipped`)
  }
  t.notOk(files.some(file => file.startsWith('src/')), 'sources stay unshipped')
})
