/**
 * The package as a consumer gets it: `npm pack` the built package, unpack it into a consumer's
 * node_modules, and use it with `import` and with `require()` (Node >= 20.19 loads ESM with require).
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { ROOT as root, ensureBuilt } from '../helpers/build.js'

const run = promisify(execFile)

/** What both consumer scripts print: proof that the package loads and protects a route. */
const SCRIPT_BODY = `
const checks = {
  resolved: RESOLVED,
  defaultIsNamed: entraAuth === named,
  errorClass: typeof EntraAuthError === 'function' && new EntraAuthError('auth_token_expired').status === 401,
  verifier: typeof createEntraVerifier === 'function',
  testKit: typeof MockJwks === 'function' && typeof FakeEntra === 'function'
}
const entra = new FakeEntra()
const app = Fastify()
app.register(entraAuth, { clientId: 'consumer-api', rejectionLogLevel: 'silent', ...entra.pluginOptions() })
app.after(() => {
  app.get('/me', { onRequest: app.entraAuth('Read') }, async (request) => ({ sub: request.entraToken.claims.sub }))
})
app.ready()
  .then(async () => {
    checks.denied = (await app.inject('/me')).statusCode
    checks.admitted = (await app.inject({ url: '/me', headers: { authorization: 'Bearer ' + entra.token('consumer-api', { scp: 'Read', sub: 'consumer' }) } })).json()
    await app.close()
    await entra.close()
    console.log(JSON.stringify(checks))
  })
`

const ESM = `import Fastify from 'fastify'
import entraAuth, { entraAuth as named, EntraAuthError, createEntraVerifier } from 'fastify-entra-auth'
import { FakeEntra, MockJwks } from 'fastify-entra-auth/testing'
const RESOLVED = import.meta.resolve('fastify-entra-auth')
${SCRIPT_BODY}`

const CJS = `const Fastify = require('fastify')
const pkg = require('fastify-entra-auth')
const { default: entraAuth, entraAuth: named, EntraAuthError, createEntraVerifier } = pkg
const { FakeEntra, MockJwks } = require('fastify-entra-auth/testing')
const RESOLVED = require('node:url').pathToFileURL(require.resolve('fastify-entra-auth')).href
${SCRIPT_BODY}`

t.test('npm pack, then import and require from a consumer', async t => {
  await ensureBuilt(['dist/index.js', 'dist/testing/index.js'])
  // Under the package directory, so the packed package finds its dependencies in ../node_modules,
  // as it would in a consumer's install; the consumer's own package.json stops self-reference.
  mkdirSync(join(root, '.tap'), { recursive: true })
  const consumer = mkdtempSync(join(root, '.tap', 'consumer-'))
  t.teardown(() => { rmSync(consumer, { recursive: true, force: true }) })

  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', consumer], { cwd: root })
  const [packed] = JSON.parse(stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  const files = packed!.files.map(file => file.path)
  for (const file of ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/testing/index.js', 'dist/testing/index.d.ts']) {
    t.ok(files.includes(file), `the package contains ${file}`)
  }
  t.notOk(files.some(file => file.startsWith('src/') || file.startsWith('test/')), 'no sources or tests are shipped')

  mkdirSync(join(consumer, 'node_modules'))
  await run('tar', ['-xzf', join(consumer, packed!.filename), '-C', join(consumer, 'node_modules')])
  renameSync(join(consumer, 'node_modules', 'package'), join(consumer, 'node_modules', 'fastify-entra-auth'))
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  writeFileSync(join(consumer, 'esm.mjs'), ESM)
  writeFileSync(join(consumer, 'cjs.cjs'), CJS)

  const installed = pathToFileURL(join(consumer, 'node_modules', 'fastify-entra-auth', 'dist', 'index.js')).href
  for (const script of ['esm.mjs', 'cjs.cjs']) {
    const result = await run(process.execPath, [script], { cwd: consumer })
    const checks = JSON.parse(result.stdout) as Record<string, unknown>
    t.same(checks, {
      resolved: installed,
      defaultIsNamed: true,
      errorClass: true,
      verifier: true,
      testKit: true,
      denied: 401,
      admitted: { sub: 'consumer' }
    }, `${script}: loads the packed package and protects a route`)
  }
})
