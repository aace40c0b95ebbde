import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
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
  t.equal(rows.length, 15)
})

t.test('the README starts with the two newcomer commands', async t => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  t.match(firstBlock, /^npm start\b/m)
  t.match(firstBlock, /^npm test\b/m)
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.ok(pkg.scripts.start && pkg.scripts.test)
})

t.test('the README "Testing your app" snippet runs as written', async t => {
  if (!existsSync(join(root, 'dist', 'testing', 'index.js'))) {
    await promisify(execFile)('npm', ['run', 'build', '--silent'], { cwd: root })
  }
  const section = readme.slice(readme.indexOf('## Testing your app'))
  const snippet = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  t.ok(snippet, 'snippet found')
  // Inside the package directory, so `fastify-entra-auth` resolves to this package (self-reference).
  const dir = join(root, '.tap', 'readme')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'snippet.test.mjs')
  writeFileSync(file, snippet as string)
  const { stdout } = await promisify(execFile)(process.execPath, ['--test', '--test-reporter=tap', file], { cwd: root })
  t.match(stdout, /# pass 1/)
  t.match(stdout, /# fail 0/)
})
