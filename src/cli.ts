#!/usr/bin/env node
/** `fastify-entra-auth inspect <token>`: only argv and I/O; everything printed is escaped (tokens are attacker-chosen). */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import type { InspectOptions } from './inspect/validate.js'
import { escapeLines } from './inspect/terminal.js'

/** EXIT.usage, without loading inspect/format.ts for --help. */
const USAGE_ERROR = 2

const USAGE = `Usage: fastify-entra-auth inspect <token | -> [options]
       fastify-entra-auth fake-entra [options]   (a fake Entra ID on loopback; see fake-entra --help)

Decodes a Microsoft Entra token and says what it is (v1.0/v2.0; delegated, app-only,
ID token, Graph token). With --client-id and --tenant or --oidc-endpoint it also
validates it the way the fastify-entra-auth plugin does, step by step.
'-' reads the token from standard input; a 'Bearer ' prefix is ignored.

Options:
  --client-id <id>          Application (client) ID of the protected API
  --tenant <tenant>         tenant ID, domain, 'organizations' or 'common'
  --authority-host <host>   with --tenant, for sovereign clouds (default login.microsoftonline.com)
  --oidc-endpoint <url>     OpenID configuration URL (instead of --tenant)
  --audience <aud>          extra accepted audience (repeatable)
  --token-version <1.0|2.0> accepted token version (repeatable; default both)
  --allowed-tenant <tid>    allowed tenant ID (repeatable)
  --scope <'A B'>           also check a route requirement: one alternative per
                            --scope, words in it all required (repeatable)
  --role <'A B'>            with --role or --app-only the requirement takes the
                            object form: --scope alternatives match 'scp' only,
                            --role alternatives 'roles' only (repeatable)
  --app-only                admit only app-only tokens (needs --role)
  --clock-tolerance <ms>    leeway for exp/nbf, in milliseconds (like the plugin's
                            clockTolerance option)
  --at <unix seconds>       judge the token as of this time (for old tokens)
  --json                    print the report as JSON
  -v, --version             print the version
  -h, --help                show this help

Control characters in the token are printed escaped (as \\u001b and so on).

Exit codes: 0 valid (or decoded when not validating), 1 invalid, 2 usage error,
3 identity provider unreachable (no verdict).
`

class UsageError extends Error {}

function number (value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const parsed = Number(value)
  if (value.trim() === '' || !Number.isFinite(parsed)) throw new UsageError(`--${name} must be a number, got '${value}'`)
  return parsed
}

interface Args { token: string, options: InspectOptions | undefined, json: boolean, help: boolean, version: boolean }

function parse (argv: string[]): Args {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'client-id': { type: 'string' },
        tenant: { type: 'string' },
        'authority-host': { type: 'string' },
        'oidc-endpoint': { type: 'string' },
        audience: { type: 'string', multiple: true },
        'token-version': { type: 'string', multiple: true },
        'allowed-tenant': { type: 'string', multiple: true },
        scope: { type: 'string', multiple: true },
        role: { type: 'string', multiple: true },
        'app-only': { type: 'boolean' },
        'clock-tolerance': { type: 'string' },
        at: { type: 'string' },
        json: { type: 'boolean' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' }
      }
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help === true || values.version === true) return { token: '', options: undefined, json: false, help: values.help === true, version: values.version === true }
  const [command, token, ...rest] = positionals
  if (command !== 'inspect') throw new UsageError(command === undefined ? 'missing command' : `unknown command '${command}'`)
  if (token === undefined) throw new UsageError('missing token')
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`)

  const clientId = values['client-id']
  const where = values.tenant ?? values['oidc-endpoint']
  const validationFlags = ['audience', 'token-version', 'allowed-tenant', 'scope', 'role', 'app-only', 'clock-tolerance', 'at', 'authority-host'] as const
  let options: InspectOptions | undefined
  if (clientId === undefined && where === undefined) {
    const stray = validationFlags.find(flag => values[flag] !== undefined)
    if (stray !== undefined) throw new UsageError(`--${stray} needs --client-id and --tenant or --oidc-endpoint`)
  } else {
    if (clientId === undefined) throw new UsageError('validating needs --client-id')
    if (values.tenant !== undefined && values['oidc-endpoint'] !== undefined) throw new UsageError('give --tenant or --oidc-endpoint, not both')
    if (where === undefined) throw new UsageError('validating needs --tenant or --oidc-endpoint')
    const tolerance = number(values['clock-tolerance'], 'clock-tolerance')
    const appOnly = values['app-only'] === true
    if (appOnly && values.role === undefined) throw new UsageError("--app-only needs the app roles the route requires: --role 'Reports.Read.All'")
    const requirement = values.role === undefined && !appOnly
      ? values.scope
      : { ...(values.scope === undefined ? {} : { scopes: values.scope }), roles: values.role, ...(appOnly ? { appOnly } : {}) }
    options = {
      clientId,
      ...(values.tenant === undefined ? { oidcEndpoint: where } : { tenant: values.tenant }),
      ...(values['authority-host'] === undefined ? {} : { authorityHost: values['authority-host'] }),
      ...(values.audience === undefined ? {} : { audiences: values.audience }),
      ...(values['token-version'] === undefined ? {} : { tokenVersions: values['token-version'] as Array<'1.0' | '2.0'> }),
      ...(values['allowed-tenant'] === undefined ? {} : { allowedTenants: values['allowed-tenant'] }),
      ...(requirement === undefined ? {} : { requirement }),
      ...(tolerance === undefined ? {} : { clockTolerance: tolerance }),
      ...(values.at === undefined ? {} : { at: number(values.at, 'at') })
    } as InspectOptions
  }
  return { token, options, json: values.json === true, help: false, version: false }
}

async function main (argv: string[]): Promise<number> {
  if (argv[0] === 'fake-entra') return await (await import('./fake-entra-cli.js')).runFakeEntra(argv.slice(1))
  let args
  try {
    args = parse(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`fastify-entra-auth: ${escapeLines(err.message)}\n\n${USAGE}`)
    return USAGE_ERROR
  }
  if (args.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if (args.version) {
    process.stdout.write(`${(createRequire(import.meta.url)('../package.json') as { version: string }).version}\n`)
    return 0
  }
  const token = args.token === '-' ? readFileSync(0, 'utf8') : args.token
  const [{ inspectToken }, { exitCodeOf, formatReport, EXIT }] = await Promise.all([import('./inspect/validate.js'), import('./inspect/format.js')])
  let report
  try {
    report = await inspectToken(token, args.options)
  } catch (err) {
    if (!(err instanceof TypeError)) throw err
    process.stderr.write(`${escapeLines(err.message)}\n`)
    return EXIT.usage
  }
  process.stdout.write(args.json ? escapeLines(JSON.stringify(report, null, 2)) + '\n' : formatReport(report))
  return exitCodeOf(report)
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`fastify-entra-auth: ${escapeLines((err as Error).stack ?? String(err))}\n`)
  process.exitCode = USAGE_ERROR
})
