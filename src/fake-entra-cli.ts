import { parseArgs } from 'node:util'
import { apiIdProblem } from './testing/grants.js'
import type { FakeEntraApi, FakeEntraClient, FakeEntraServerOptions, FakeEntraUser } from './testing/index.js'

const USAGE = `Usage: fastify-entra-auth fake-entra [options]

Runs a fake Microsoft Entra ID on 127.0.0.1 for development and tests: discovery, keys,
a sign-in page listing test users, and a token endpoint (client credentials,
authorization code with PKCE, refresh token, on-behalf-of) whose tokens look like
Entra's. Point your API's oidcEndpoint at the printed discovery URL and your clients
at the printed authority. Ctrl-C stops it.

Options:
  --port <n>                 port to listen on (default 0: any free port)
  --api <client id>          a protected API's Application (client) ID (repeatable: an API
                             and the downstream APIs it calls on behalf of users; default:
                             any API). The next three options describe the --api before them
  --app-roles <A,B>          with --api: app roles granted to client apps (app-only tokens)
  --scopes <A,B>             with --api: delegated scopes the API exposes (default: any)
  --token-version <1.0|2.0>  with --api: its access-token version (default 2.0)
  --client <id[:secret]>     accept only these clients (repeatable); without a secret, a
                             public client (SPA, native). Default: any client ID and secret
  --user <name@domain[:A,B]> a test user of the sign-in page, with its app roles
                             (repeatable; the first is the default user that
                             prompt=none signs in. Default test.user@contoso.example)
  --user-roles <A,B>         app roles of the default user
  --auto-sign-in             sign the default user in at once, without the sign-in
                             page (for automated clients)
  --tenant-id <guid>         the tenant ID (default 72f988bf-0000-4000-8000-00000000f00d)
  --host <address>           address to listen on (default 127.0.0.1)
  --allow-non-loopback       listen on a --host that is not loopback anyway (it accepts anyone!)
  -h, --help                 show this help

Exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 could not start, 2 usage error.
`

const EXAMPLE_API = '00000000-0000-0000-0000-000000000001'

export class UsageError extends Error {}

function list (value: string | undefined): string[] | undefined {
  return value?.split(',').map(item => item.trim()).filter(item => item !== '')
}

const PER_API = ['app-roles', 'scopes', 'token-version'] as const

/** Options before the first `--api` describe the first, as when there was only one. */
function apisOf (tokens: ReadonlyArray<{ kind: string, name?: string, value?: string | undefined }>): FakeEntraApi[] | undefined {
  const apis: FakeEntraApi[] = []
  const pending: Array<{ name: typeof PER_API[number], value: string }> = []
  const describe = (api: FakeEntraApi, { name, value }: { name: typeof PER_API[number], value: string }): void => {
    const key = name === 'app-roles' ? 'appRoles' : name === 'scopes' ? 'scopes' : 'tokenVersion'
    if (api[key] !== undefined) throw new UsageError(`--${name} is given twice for --api ${api.clientId}`)
    if (key === 'tokenVersion') {
      if (value !== '1.0' && value !== '2.0') throw new UsageError(`--token-version must be 1.0 or 2.0, got '${value}'`)
      api.tokenVersion = value
    } else api[key] = list(value) ?? []
  }
  for (const token of tokens) {
    if (token.kind !== 'option' || token.name === undefined) continue
    if (token.name === 'api') {
      const clientId = token.value ?? ''
      const problem = apiIdProblem('--api', clientId)
      if (problem !== undefined) throw new UsageError(problem)
      if (apis.some(api => api.clientId === clientId)) throw new UsageError(`--api ${clientId} is given twice`)
      const api: FakeEntraApi = { clientId }
      if (apis.length === 0) for (const option of pending.splice(0)) describe(api, option)
      apis.push(api)
      continue
    }
    const name = PER_API.find(candidate => candidate === token.name)
    if (name === undefined) continue
    const option = { name, value: token.value ?? '' }
    const api = apis.at(-1)
    if (api === undefined) pending.push(option)
    else describe(api, option)
  }
  if (pending.length > 0) throw new UsageError(`--${pending[0]?.name as string} describes the API: give its client ID with --api`)
  return apis.length === 0 ? undefined : apis
}

export function parse (argv: string[]): (FakeEntraServerOptions & { help?: false }) | { help: true } {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      tokens: true,
      options: {
        port: { type: 'string' },
        api: { type: 'string', multiple: true },
        'app-roles': { type: 'string' },
        scopes: { type: 'string' },
        'token-version': { type: 'string' },
        client: { type: 'string', multiple: true },
        user: { type: 'string', multiple: true },
        'user-roles': { type: 'string' },
        'auto-sign-in': { type: 'boolean' },
        'tenant-id': { type: 'string' },
        host: { type: 'string' },
        'allow-non-loopback': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values } = parsed
  if (values.help === true) return { help: true }
  const port = Number(values.port ?? '0')
  if (!/^\d+$/.test(values.port ?? '0') || port > 65535) throw new UsageError(`--port must be a port number (0 to 65535), got '${values.port ?? ''}'`)
  const apis = apisOf(parsed.tokens)
  const tenantId = values['tenant-id']
  if (tenantId !== undefined && !/^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$/i.test(tenantId)) throw new UsageError(`--tenant-id must be a GUID, got '${tenantId}'`)

  const options: FakeEntraServerOptions = { port, allowNonLoopback: values['allow-non-loopback'] === true }
  if (values.host !== undefined) options.host = values.host
  if (tenantId !== undefined) options.tenantId = tenantId.toLowerCase()
  if (apis !== undefined) options.apis = apis
  if (values.client !== undefined) {
    options.clients = values.client.map((value): FakeEntraClient => {
      const colon = value.indexOf(':')
      const clientId = colon < 0 ? value : value.slice(0, colon)
      if (clientId === '') throw new UsageError(`--client needs a client ID, got '${value}'`)
      return colon < 0 ? { clientId } : { clientId, secret: value.slice(colon + 1) }
    })
  }
  const users = (values.user ?? []).map((value): FakeEntraUser => {
    const colon = value.indexOf(':')
    const username = colon < 0 ? value : value.slice(0, colon)
    if (!/^[^\s@:]+@[^\s@:]+$/.test(username)) throw new UsageError(`--user must be name@domain, optionally followed by :RoleA,RoleB; got '${value}'`)
    const roles = colon < 0 ? undefined : list(value.slice(colon + 1))
    return { username, ...(roles === undefined ? {} : { roles }) }
  })
  const roles = list(values['user-roles'])
  if (roles !== undefined) {
    if (users[0]?.roles !== undefined) throw new UsageError('give the default user\'s app roles once: either --user name@domain:A,B or --user-roles A,B')
    users[0] = { ...(users[0] ?? {}), roles }
  }
  const [first, ...others] = users
  if (first !== undefined) options.user = first
  if (others.length > 0) options.users = others
  if (values['auto-sign-in'] === true) options.autoSignIn = true
  return options
}

function testUserLines (options: FakeEntraServerOptions): string[] {
  const users = [options.user ?? {}, ...(options.users ?? [])]
  return users.map(user => `  ${user.username ?? 'test.user@contoso.example'}${user.roles === undefined || user.roles.length === 0 ? '' : ` (app roles: ${user.roles.join(', ')})`}`)
}

function quote (value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`
}

function onBehalfOfLines (options: FakeEntraServerOptions, tokenEndpoint: string): string[] {
  const [api, downstream] = options.apis ?? []
  if (api === undefined || downstream === undefined) return []
  const secret = options.clients === undefined ? 'any-secret' : options.clients.find(client => client.clientId === api.clientId)?.secret
  if (secret === undefined) return [`On behalf of a user: register API ${api.clientId} as a confidential client (--client ${api.clientId}:<secret>) to call API ${downstream.clientId}.`, '']
  const form = [
    'grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer',
    'requested_token_use=on_behalf_of',
    `client_id=${api.clientId}`,
    `client_secret=${secret}`,
    `scope=api://${downstream.clientId}/.default`
  ]
  return [
    `On behalf of a user: API ${api.clientId} exchanges a user's token for it ($USER_TOKEN) for one for API ${downstream.clientId}:`,
    `curl -s ${form.map(field => `--data-urlencode ${quote(field)}`).join(' ')} --data-urlencode "assertion=$USER_TOKEN" ${tokenEndpoint}`,
    ''
  ]
}

export async function runFakeEntra (argv: string[]): Promise<number> {
  let options
  try {
    options = parse(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`fastify-entra-auth fake-entra: ${err.message}\n\n${USAGE}`)
    return 2
  }
  if (options.help === true) {
    process.stdout.write(USAGE)
    return 0
  }
  const { startFakeEntraServer } = await import('./testing/fake-entra-server.js')
  let server
  try {
    server = await startFakeEntraServer({ ...options, log: line => { process.stdout.write(`${line}\n`) } })
  } catch (err) {
    const hint = err instanceof TypeError ? ' (on the command line: --allow-non-loopback)' : ''
    process.stderr.write(`fastify-entra-auth fake-entra: ${(err as Error).message}${hint}\n`)
    return err instanceof TypeError ? 2 : 1
  }
  const api = options.apis?.[0]?.clientId ?? EXAMPLE_API
  const client = options.clients?.find(candidate => candidate.secret !== undefined)
  const form = [
    'grant_type=client_credentials',
    `client_id=${client?.clientId ?? 'my-daemon'}`,
    `client_secret=${client?.secret ?? 'any-secret'}`,
    `scope=api://${api}/.default`
  ]
  const out = [
    `authority: ${server.authority}`,
    `discovery: ${server.oidcEndpoint}`,
    `token endpoint: ${server.tokenEndpoint}`,
    `authorize endpoint: ${server.entra.authorizationEndpoint}`,
    `issuer: ${server.entra.issuer}`,
    '',
    options.autoSignIn === true
      ? 'Sign-in: the default user, at once (--auto-sign-in).'
      : 'Sign-in: a page at the authorize endpoint lists the test users (prompt=none signs in the first):',
    ...testUserLines(options),
    '',
    `An app-only token for API ${api}${options.clients === undefined ? ' (any client ID and secret work)' : ''}:`,
    `curl -s ${form.map(field => `--data-urlencode ${quote(field)}`).join(' ')} ${server.tokenEndpoint}`,
    '',
    ...onBehalfOfLines(options, server.tokenEndpoint),
    'Ctrl-C stops it.'
  ]
  process.stdout.write(out.join('\n') + '\n')
  await new Promise<void>(resolve => {
    const stop = (): void => { resolve() }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await server.close()
  return 0
}
