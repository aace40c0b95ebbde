/**
 * The README's "Testing your app" snippet, run as a user would run it: written to a file inside
 * the package (so `fastify-entra-auth` resolves to the built package by self-reference) and run
 * with `node --test`.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ensureBuilt, ROOT as root } from '../helpers/build.js'

t.setTimeout(180_000)
const readme = readFileSync(join(root, 'README.md'), 'utf8')

t.test('the README "Testing your app" snippet runs as written', async t => {
  await ensureBuilt(['dist/index.js', 'dist/testing/index.js'])
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
