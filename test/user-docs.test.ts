/**
 * What users read — README, docs/, CONTRIBUTING, CHANGELOG, SECURITY, the examples, and the sources whose comments end
 * up in the published `.d.ts`/`.js` files — speaks the user's language: no names of this
 * project's internal process ("the seed", "contract §6", "issue 11", "where the issues were
 * silent"). The Python library this package ports is called by its name, flask-entra-auth.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'
import { ROOT } from './helpers/fixtures.js'

const INTERNAL: Array<[RegExp, string]> = [
  [/\bthe seed\b|\bseed's\b|\bPython seed\b/i, 'say "the Python flask-entra-auth"'],
  [/\bcontract(?:'s)?\s*(?:§|\(§|section)/i, 'cite the README section or the RFC instead'],
  [/\bwhere the issues were silent\b/i, 'say what was decided, and why'],
  [/\b(?:GitHub )?issues? #?\d+\b/i, 'name the feature, not the tracker entry']
]

function files (dir: string, pattern: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter(file => pattern.test(file))
    .map(file => join(dir, file))
}

/** Each use of internal vocabulary in `text`, as `file:line: words — fix`. */
function findings (file: string, text: string): string[] {
  const found: string[] = []
  text.split('\n').forEach((line, index) => {
    for (const [pattern, fix] of INTERNAL) {
      const match = pattern.exec(line)
      // External trackers are fine: `fastify/fastify-swagger#803` names another project's issue.
      if (match !== null && !/[\w-]+\/[\w-]+#\d+/.test(line)) {
        found.push(`${file}:${index + 1}: "${match[0]}" — ${fix}`)
        break
      }
    }
  })
  return found
}

t.test('the checker catches internal vocabulary', async t => {
  t.equal(findings('x', 'ships the seed\'s mocks').length, 1)
  t.equal(findings('x', '/** Options (contract §2). */').length, 1)
  t.equal(findings('x', '## Decisions where the issues were silent').length, 1)
  t.equal(findings('x', '// Observability (issue 6): one log line').length, 1)
  t.equal(findings('x', 'as the Python flask-entra-auth does').length, 0)
  t.equal(findings('x', 'no API for it (fastify/fastify-swagger#803)').length, 0)
})

t.test('no internal vocabulary in what users read', async t => {
  const read = [
    'README.md', 'CONTRIBUTING.md', 'CHANGELOG.md', 'SECURITY.md',
    ...files('docs', /\.md$/),
    ...files('examples', /\.[cm]?[jt]s$/),
    ...files('src', /\.ts$/)
  ]
  t.ok(read.length > 20, `${read.length} files`)
  const found = read.flatMap(file => findings(relative(ROOT, join(ROOT, file)), readFileSync(join(ROOT, file), 'utf8')))
  t.same(found, [])
})
