/**
 * The user documentation holds together: the README stays a newcomer's page (short, a table of
 * contents, install first), its problem table equals the registry, and every relative link of the
 * README and docs/ resolves, anchors included. The code blocks are compiled by
 * test/e2e/doc-examples.test.ts.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import t from 'tap'
import { problems } from '../src/index.js'
import { ROOT } from './helpers/fixtures.js'

const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')
const readme = read('README.md')

/** The Markdown files users read: README, CONTRIBUTING, CHANGELOG, SECURITY and docs/. */
export function userDocs (): string[] {
  const docs = readdirSync(join(ROOT, 'docs')).filter(file => file.endsWith('.md')).map(file => `docs/${file}`)
  return ['README.md', 'CONTRIBUTING.md', 'CHANGELOG.md', 'SECURITY.md', ...docs.sort()]
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors (markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const [, heading] of markdown.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = (heading as string).toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replaceAll(' ', '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    result.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return result
}

/** Relative links of a Markdown file that don't resolve, as `file: target`. */
function brokenLinks (file: string, markdown = read(file)): string[] {
  const text = markdown.replace(/^ *```[\s\S]*?^ *```/gm, '').replace(/`[^`\n]*`/g, '')
  const broken: string[] = []
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z][a-z+.-]*:/i.test(target as string)) continue
    const [path, anchor] = (target as string).split('#') as [string, string | undefined]
    const resolved = path === '' ? file : relative(ROOT, join(ROOT, dirname(file), path))
    if (resolved === file) {
      if (anchor !== undefined && !anchors(markdown).has(anchor)) broken.push(`${file}: ${target} (no heading #${anchor})`)
    } else if (!existsSync(join(ROOT, resolved))) {
      broken.push(`${file}: ${target} (no ${resolved})`)
    } else if (anchor !== undefined && !(statSync(join(ROOT, resolved)).isFile() && resolved.endsWith('.md') && anchors(read(resolved)).has(anchor))) {
      broken.push(`${file}: ${target} (no heading #${anchor} in ${resolved})`)
    }
  }
  return broken
}

t.test('the link checker finds broken links and anchors', async t => {
  t.same([...anchors('# A `b` c\n## Testing your app\n## `request.entraToken`\n## x\n## x\n')], ['a-b-c', 'testing-your-app', 'requestentratoken', 'x', 'x-1'])
  const links = '[a](nowhere.md) [b](../README.md#nowhere) [c](../README.md#install) [d](https://example.com/x.md) [e](#f) `[g](h.md)`\n# F\n'
  t.same(brokenLinks('docs/x.md', links).map(link => link.split(' (')[0]), ['docs/x.md: nowhere.md', 'docs/x.md: ../README.md#nowhere'])
})

t.test('every relative link of the user docs resolves, anchors included', async t => {
  const files = userDocs()
  t.ok(files.length >= 14, `${files.length} files`)
  t.same(files.flatMap(file => brokenLinks(file)), [])
  for (const doc of files.filter(file => file.startsWith('docs/'))) {
    t.match(readme, `](${doc})`, `the README links ${doc}`)
  }
})

t.test('the README problem table equals the registry', async t => {
  const table = readme.slice(readme.indexOf('<!-- problem-table:start -->'), readme.indexOf('<!-- problem-table:end -->'))
  const rows = table.split('\n').filter(line => line.startsWith('| `'))
  const documented = Object.fromEntries(rows.map(row => {
    const [type, status, title] = row.split('|').slice(1, 4).map(cell => cell.trim())
    return [type!.replaceAll('`', ''), { status: Number(status), title }]
  }))
  const registry = Object.fromEntries(Object.entries(problems).map(([type, p]) => [type, { status: p.status, title: p.title }]))
  t.same(documented, registry)
  t.equal(rows.length, 16)
})

t.test('the README is a newcomer\'s page: short, a table of contents, install first', async t => {
  const lines = readme.split('\n').length
  t.ok(lines <= 350, `${lines} lines`)
  const sections = [...readme.matchAll(/^## (.+)$/gm)].map(match => match[1])
  const toc = [...readme.slice(0, readme.indexOf('\n## ')).matchAll(/^- \[(.+?)\]\(#([^)]+)\)$/gm)].map(match => match[1])
  t.same(toc, sections, 'the table of contents lists every section, in order')
  t.same(sections.slice(0, 8), [
    'What it is', 'Install', 'Quick start', 'Protecting routes', '`request.entraToken`',
    'Testing your app', 'Problem types', 'The options most people set'
  ])
  const firstBlock = /```(\w+)\n([\s\S]*?)```/.exec(readme)
  t.same([firstBlock?.[1], firstBlock?.[2]], ['sh', 'npm install fastify-entra-auth\n'], 'the first block installs the package')
  t.match(readme.slice(readme.indexOf('## Quick start')), /```ts\nimport Fastify from 'fastify'\nimport entraAuth from 'fastify-entra-auth'/, 'then the minimal app')
  // The repository's own commands stay findable (CI runs what the README names).
  t.match(readme, /`npm ci && npm start`/)
  t.match(readme, /`npm test`/)
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>, files: string[] }
  t.ok(pkg.scripts.start && pkg.scripts.test)
  t.ok(pkg.files.includes('docs'), 'docs/ ships with the package, so the README\'s links work from npm')
})
