/**
 * The APIs the fake Entra knows: given as client IDs (an App ID URI is refused with the plugin's
 * hint), one or several, from `FakeEntra`, `startFakeEntraServer` and `fake-entra --api`.
 */
import t from 'tap'
import { createEntraVerifier } from '../src/index.js'
import { parse, UsageError } from '../src/fake-entra-cli.js'
import { FakeEntra, startFakeEntraServer } from '../src/testing/index.js'

const API = '00000000-0000-4000-8000-0000000000a1'
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
