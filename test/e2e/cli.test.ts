/**
 * The built token debugger as a user runs it: `node dist/cli.js inspect …` as a process, on a real
 * Entra token (test/fixtures/entra, vector 04), against a loopback identity provider serving that
 * token's real JWKS. The same checks in-process are in test/inspect.test.ts.
 */
import t from 'tap'
import type { InspectReport } from '../../src/inspect.js'
import { ensureBuilt, loopbackEntra, runCli } from '../helpers/build.js'
import { readFixture, readJsonFixture } from '../helpers/fixtures.js'

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
  await ensureBuilt(['dist/cli.js', 'dist/inspect.js', 'dist/testing/index.js'])

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
  })
})
