/**
 * One table of option defaults (`OPTION_DEFAULTS`): docs/options.md's option table says the same, the
 * resolved options use it, and the resolved options are deeply frozen.
 */
import t from 'tap'
import { OPTION_DEFAULTS, resolveOptions } from '../src/options.js'
import { readFileSync } from 'node:fs'
import { ROOT } from './helpers/index.js'
import { join } from 'node:path'

/** The option table of docs/options.md: option → default cell. */
function documentedDefaults (): Map<string, string> {
  const section = readFileSync(join(ROOT, 'docs', 'options.md'), 'utf8')
  const rows = new Map<string, string>()
  for (const line of section.split('\n')) {
    const cells = line.split(' | ')
    const name = /^\| `([^`]+)`$/.exec(cells[0] ?? '')?.[1]
    if (name !== undefined && cells.length >= 4) rows.set(name, (cells[2] as string).trim())
  }
  return rows
}

const UNITS: Record<string, number> = { h: 3_600_000, min: 60_000, s: 1000, ms: 1, MiB: 1024 * 1024 }

/** What a documented default cell means, as a value comparable with the table's. */
function meaning (cell: string): unknown {
  if (cell === 'both') return ['1.0', '2.0']
  if (/^`\[\]`( \(all\))?$/.test(cell)) return []
  const unit = /^(\d+) (h|min|s|ms|MiB)$/.exec(cell)
  if (unit !== null) return Number(unit[1]) * (UNITS[unit[2] as string] as number)
  const number = /^`?(\d+)`?( \(.*\))?$/.exec(cell)
  if (number !== null) return Number(number[1])
  const code = /^`([^`]+)`$/.exec(cell)
  if (code !== null) return code[1]
  return cell
}

t.test('the option reference (docs/options.md) shows every default of OPTION_DEFAULTS', async t => {
  const rows = documentedDefaults()
  t.ok(rows.size >= 20, `${rows.size} options in the table`)
  for (const [name, value] of Object.entries(OPTION_DEFAULTS)) {
    const cell = rows.get(name)
    t.ok(cell !== undefined, `docs/options.md documents ${name}`)
    t.same(meaning(cell ?? ''), value, `${name}: docs/options.md says ${cell}`)
  }
})

t.test('resolved options take their defaults from the table, and are deeply frozen', async t => {
  const options = resolveOptions({ clientId: 'c0ffee00-0000-4000-8000-000000000001', tenant: 'contoso.onmicrosoft.com' })
  t.equal(options.discoveryUrl.hostname, OPTION_DEFAULTS.authorityHost)
  t.same(options.jwks, { ttl: OPTION_DEFAULTS['jwks.ttl'], cooldown: OPTION_DEFAULTS['jwks.cooldown'], timeout: OPTION_DEFAULTS['jwks.timeout'], maxStale: OPTION_DEFAULTS['jwks.maxStale'], maxBytes: OPTION_DEFAULTS['jwks.maxBytes'] })
  t.equal(options.tokenCacheMax, OPTION_DEFAULTS['tokenCache.max'])
  t.equal(options.tokenCacheMaxBytes, OPTION_DEFAULTS['tokenCache.maxBytes'])
  t.equal(options.clockTolerance, OPTION_DEFAULTS.clockTolerance)
  t.equal(options.rejectionLogLevel, OPTION_DEFAULTS.rejectionLogLevel)
  t.equal(options.decorator, OPTION_DEFAULTS.decorator)
  t.same([...options.tokenVersions], OPTION_DEFAULTS.tokenVersions)
  t.ok(Object.isFrozen(options) && Object.isFrozen(options.jwks) && Object.isFrozen(OPTION_DEFAULTS))

  // A Set survives Object.freeze; these are the sets every token is judged against.
  const audiences = options.audiences as Set<string>
  t.throws(() => Set.prototype.add.call(audiences, 'api://evil'), 'audiences cannot be widened')
  t.notOk(audiences.has('api://evil'))
  const listed = resolveOptions({ clientId: 'c0ffee00-0000-4000-8000-000000000001', tenant: 'contoso.onmicrosoft.com', allowedApps: ['app'], allowedSubjects: ['sub'] })
  for (const set of [listed.allowedApps, listed.allowedSubjects, listed.tokenVersions]) {
    t.throws(() => Set.prototype.add.call(set as Set<string>, 'evil'))
    t.throws(() => { (set as unknown as { add: (v: string) => void }).add('evil') })
  }
})
