import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { problems } from '../src/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const readme = readFileSync(join(root, 'README.md'), 'utf8')

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

t.test('the README starts with the two newcomer commands', async t => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  // Typed literally on a fresh clone: the first line installs before it starts.
  t.match(firstBlock, /^npm ci && npm start\b/m)
  t.match(firstBlock, /^npm test\b/m)
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.ok(pkg.scripts.start && pkg.scripts.test)
})
