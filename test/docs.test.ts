/**
 * What users read and use as written: the documentation holds together and speaks the user's
 * language, the README's testing recipes run, the public API holds at run time, and the suite
 * needs nothing outside the repository. One section per subject below.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyAuth from '@fastify/auth'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import * as api from '../src/index.js'
import entraAuth, { problems, createEntraVerifier, EntraAuthError, EntraToken } from '../src/index.js'
import * as testing from '../src/testing/index.js'
import { FakeEntra, MOCK_ISSUER, MockClaims, MockJwks, MockJwtClient } from '../src/testing/index.js'
import { describeToken } from '../src/inspect/describe.js'
import { ROOT, FIXTURES } from './helpers/fixtures.js'
import { API_ID, assertProblem, bearer, closing, fakeEntra } from './helpers/index.js'

/**
 * The user documentation holds together: the README stays a newcomer's page (short, a table of
 * contents, install first), its problem table equals the registry, and every relative link of the
 * README and docs/ resolves, anchors included. The code blocks are compiled by
 * test/e2e/doc-examples.test.ts.
 */
t.test('documentation', async t => {
  const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')
  const readme = read('README.md')

  /** The Markdown files users read: README, CONTRIBUTING, CHANGELOG, SECURITY and docs/. */
  function userDocs (): string[] {
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
})

/**
 * What users read — README, docs/, CONTRIBUTING, CHANGELOG, SECURITY, the examples, and the sources whose comments end
 * up in the published `.d.ts`/`.js` files — speaks the user's language: no names of this
 * project's internal process ("the seed", "contract §6", "issue 11", "where the issues were
 * silent"). The Python library this package ports is called by its name, flask-entra-auth.
 */
t.test('user vocabulary', async t => {
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
})

/**
 * The README's "Testing your app" recipes, each run as its table line writes it, so the table
 * can't drift from the kit's API.
 */
t.test('testing recipes', async t => {
  const API = 'my-api'
  const OTHER = '0b0b0b0b-0000-4000-8000-00000000beef'

  async function setup (t: Test, entra = new FakeEntra()) {
    const app = Fastify()
    await app.register(entraAuth, { clientId: API, ...entra.pluginOptions(), jwks: { cooldown: 0, timeout: 200 } })
    app.get('/files', { onRequest: app.entraAuth(['Files.Read']) }, async request => ({ version: request.entraToken?.version, appOnly: request.entraToken?.isAppOnly }))
    app.get('/daemon', { onRequest: app.entraAuth({ roles: ['Files.Read.All'] }) }, async request => ({ appOnly: request.entraToken?.isAppOnly }))
    t.teardown(async () => { await app.close(); await entra.close() })
    const call = (token = '', url = '/files') => app.inject({ url, headers: { authorization: `Bearer ${token}` } })
    return { app, entra, call }
  }

  t.test('valid, missing, expired, wrong audience, wrong scope', async t => {
    const { app, entra, call } = await setup(t)
    t.equal((await call(entra.token(API, { scp: 'Files.Read' }))).statusCode, 200)
    const missing = await app.inject({ url: '/files' })
    t.same([missing.statusCode, missing.json().type], [401, 'auth_header_missing'])
    const expired = await call(entra.token(API, { exp: Math.floor(Date.now() / 1000) - 60 }))
    t.same([expired.statusCode, expired.json().type], [401, 'auth_token_expired'])
    const audience = await call(entra.token('another-api', { scp: 'Files.Read' }))
    t.same([audience.statusCode, audience.json().type], [401, 'auth_token_audience_invalid'])
    const scope = await call(entra.token(API, { scp: 'Other' }))
    t.same([scope.statusCode, scope.json().type], [403, 'auth_token_insufficient_scopes'])
  })

  t.test('app-only and v1', async t => {
    const { entra, call } = await setup(t)
    const app = await call(entra.client(API, 'app').generate({ roles: ['Files.Read.All'] }), '/daemon')
    t.same([app.statusCode, app.json()], [200, { appOnly: true }])
    const v1 = await call(entra.client(API, 'v1').generate({ scp: 'Files.Read' }))
    t.same([v1.statusCode, v1.json().version], [200, '1.0'])
  })

  t.test('another tenant', async t => {
    const { entra, call } = await setup(t)
    const res = await call(entra.token(API, { tid: OTHER, iss: entra.issuer.replace(entra.tenantId, OTHER) }))
    t.same([res.statusCode, res.json().type], [401, 'auth_token_issuer_untrusted'])

    const multi = new FakeEntra({ tenant: 'organizations' })
    const { call: callMulti } = await setup(t, multi)
    t.equal((await callMulti(multi.token(API, { tid: OTHER, iss: multi.issuerFor(OTHER), scp: 'Files.Read' }))).statusCode, 200)
  })

  t.test('key rotation', async t => {
    const { entra, call } = await setup(t)
    t.equal((await call(entra.token(API, { scp: 'Files.Read' }))).statusCode, 200)
    const fetched = entra.requests.jwks
    const key = entra.newKey(); entra.keys.push(key)
    t.equal((await call(entra.client(API, 'v2', key).generate({ scp: 'Files.Read' }))).statusCode, 200)
    t.equal(entra.requests.jwks, fetched + 1)
  })

  t.test('provider down', async t => {
    for (const mode of ['discovery-404', 'jwks-404', 'hang'] as const) {
      const entra = new FakeEntra()
      entra.mode = mode
      const { call } = await setup(t, entra)
      const res = await call(entra.token(API, { scp: 'Files.Read' }))
      t.same([res.statusCode, res.json().type], [503, 'auth_oidc_error'], mode)
    }
  })

  t.test('entra.pluginOptions(): a key published after start verifies at once', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    await app.ready()
    t.equal((await app.inject({ url: '/me', headers: bearer(entra.token(API_ID)) })).statusCode, 200)
    t.equal(entra.requests.jwks, 1)

    const rotated = entra.newKey()
    entra.keys.push(rotated)
    const token = entra.client(API_ID, 'v2', rotated).generate()
    t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'the new kid is fetched and admitted')
    t.equal(entra.requests.jwks, 2, 'by one refresh')
    t.same(entra.pluginOptions().jwks, { cooldown: 0 })
  })

  t.test('with the production cooldown, the same rotation waits (what pluginOptions() avoids)', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    // Spreading your own `jwks` after pluginOptions() replaces the test timings.
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), jwks: {} })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    await app.ready()
    const rotated = entra.newKey()
    entra.keys.push(rotated)
    assertProblem(t, await app.inject({ url: '/me', headers: bearer(entra.client(API_ID, 'v2', rotated).generate()) }), 'auth_token_key_error')
    t.equal(entra.requests.jwks, 1, 'no refresh within the cooldown')
  })

  /** The README's API-key strategy. */
  async function verifyApiKey (request: FastifyRequest): Promise<void> {
    if (request.headers['x-api-key'] !== 'let-me-in') throw Object.assign(new Error('invalid API key'), { statusCode: 401 })
  }

  async function reportsApp (t: Test, order: 'readme' | 'reversed'): Promise<{ app: FastifyInstance, entra: FakeEntra }> {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(fastifyAuth)
    await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
    app.setErrorHandler((error, _request, reply) => {
      if (error instanceof EntraAuthError) return app.entraAuth.sendProblem(reply, error)
      return reply.send(error)
    })
    const strategies = [verifyApiKey, app.entraAuth.strategy('Reports.Read')]
    if (order === 'reversed') strategies.reverse()
    app.get('/reports', { onRequest: app.auth(strategies) }, async () => ({ ok: true }))
    return { app, entra }
  }

  t.test('@fastify/auth as in the README: the Entra strategy last, so its problem is what clients get', async t => {
    const { app, entra } = await reportsApp(t, 'readme')
    assertProblem(t, await app.inject('/reports'), 'auth_header_missing')
    assertProblem(t, await app.inject({ url: '/reports', headers: { authorization: 'Bearer not.a.token' } }), 'auth_token_invalid')
    assertProblem(t, await app.inject({ url: '/reports', headers: bearer(entra.token('another-api', { scp: 'Reports.Read' })) }), 'auth_token_audience_invalid')
    assertProblem(t, await app.inject({ url: '/reports', headers: bearer(entra.token(API_ID, { scp: 'Other' })) }), 'auth_token_insufficient_scopes', { scope: `api://${API_ID}/Reports.Read` })
    t.equal((await app.inject({ url: '/reports', headers: bearer(entra.token(API_ID, { scp: 'Reports.Read' })) })).statusCode, 200)
    t.equal((await app.inject({ url: '/reports', headers: { 'x-api-key': 'let-me-in' } })).statusCode, 200)

    // The other order: every failure becomes the API key's error, which is why the README orders them so.
    const reversed = await reportsApp(t, 'reversed')
    const res = await reversed.app.inject('/reports')
    t.equal(res.statusCode, 401)
    t.match(res.json(), { message: 'invalid API key' })
  })

  t.test('standalone introspect: { active: false } for bad tokens, rejects with auth_oidc_error when keys can\'t be had', async t => {
    const entra = fakeEntra(t)
    const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions() })
    t.teardown(() => verifier.close())
    t.same(await verifier.introspect('not.a.token'), { active: false })
    t.match(await verifier.introspect(entra.token(API_ID)), { active: true })

    const down = fakeEntra(t)
    down.mode = 'jwks-404'
    const unavailable = createEntraVerifier({ clientId: API_ID, ...down.pluginOptions() })
    t.teardown(() => unavailable.close())
    await t.rejects(unavailable.introspect(down.token(API_ID)), { name: 'EntraAuthError', type: 'auth_oidc_error', status: 503 })
  })

  t.test('MockJwks, MockClaims and MockJwtClient plug into the plugin through a FakeEntra', async t => {
    const jwks = new MockJwks()
    const client = new MockJwtClient({ key: jwks.jwk, claims: new MockClaims({ selfAppId: 'my-api' }) })
    // The mocks' tokens carry the mock issuer; the fake publishes it and serves the MockJwks.
    const entra = fakeEntra(t, { issuer: MOCK_ISSUER, keyIssuer: null })
    entra.jwksDocument = jwks.toJSON()
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: 'my-api', rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    app.get('/a', { onRequest: app.entraAuth(['SCOPE_A']) }, async request => ({ sub: request.entraToken?.claims.sub }))
    const res = await app.inject({ url: '/a', headers: bearer(client.generate()) })
    t.same([res.statusCode, res.json()], [200, { sub: 'test_subject' }])
    assertProblem(t, await app.inject({ url: '/a', headers: bearer(client.generate({ scp: 'SCOPE_B', roles: false })) }), 'auth_token_insufficient_scopes', { scope: 'api://my-api/SCOPE_A' })
  })
})

/**
 * What the public API lets user code do, at run time: an `EntraToken` comes only from the verifier
 * (a type and `instanceof`, no constructor to call), and internals stay out of reach.
 */
t.test('public API', async t => {
  t.test('an EntraToken is made by the verifier only', async t => {
    const entra = new FakeEntra()
    const verifier = createEntraVerifier({ clientId: 'my-api', oidcEndpoint: entra.oidcEndpoint, dispatcher: entra.dispatcher })
    t.teardown(async () => { await verifier.close(); await entra.close() })
    const raw = entra.token('my-api')
    const token = await verifier.verify(raw)
    t.ok(token instanceof EntraToken, 'verify() resolves with an EntraToken')
    const Construct = EntraToken as unknown as new (...args: unknown[]) => EntraToken
    t.throws(() => new Construct(raw, token.header, token.claims), { name: 'TypeError', message: /made only by the verifier/ })
    t.throws(() => new Construct(entra.token('my-api', { aud: 'forged' }), { alg: 'RS256', kid: 'k' }, { ver: '2.0' }), TypeError, 'not even for claims it never saw')

    // The inspector describes an unverified token with its own shape, never an EntraToken.
    const description = describeToken(raw)
    t.notOk(Object.values(description).some(value => value instanceof EntraToken))
    t.same([description.identity.clientId, description.identity.isAppOnly, description.identity.scopes], [token.clientId, false, [...token.scopes]])
  })

  t.test('internals are not exported', async t => {
    t.notOk('EntraAuthOptionsSchema' in api, 'the options schema is internal: resolveOptions is the validator')
    const entra = new FakeEntra()
    t.teardown(() => entra.close())
    t.notOk('grants' in entra, 'FakeEntra keeps its grant store private')
    t.notOk('GrantStore' in testing)
  })
})

/**
 * The suite runs on a fresh clone with nothing beside it: no test file may name a path outside
 * the repository (such as a vectors folder in a `shared` folder next to the clone). Every file under test/
 * (fixtures aside) is scanned for relative paths, `join`/`resolve` chains from the file's own
 * folder and `new URL(…, import.meta.url)` that resolve outside the repository root, and for
 * absolute paths into the machine's shared folders. Data a test needs is vendored under
 * test/fixtures/ and read with helpers/fixtures.ts.
 */
t.test('self-contained', async t => {
  const SOURCE = /\.(?:[cm]?[jt]s|json)$/

  /** The folder the file is in, as test code spells it. */
  const HERE = String.raw`(?:dirname\(\s*fileURLToPath\(\s*import\.meta\.url\s*\)\s*\)|import\.meta\.dirname|__dirname)`
  const CHAIN = new RegExp(String.raw`(?:join|resolve)\(\s*${HERE}\s*((?:,\s*(['"\x60])[^'"\x60\n]*\2\s*)*)\)`, 'g')
  /** A relative path given to an import or a file-system, path or process call (not any string: a test may send `../..` as data). */
  const LITERAL = /(?:\bfrom\s+|\b(?:import|require|URL|readFile|readFileSync|readdir|readdirSync|existsSync|statSync|lstatSync|createReadStream|open|openSync|join|resolve|spawn|execFile)\(\s*)(['"`])((?:\.\.?\/)+[^'"`\n]*|\.\.)\1/g
  const SEGMENT = /(['"`])([^'"`\n]*)\1/g
  /** Absolute paths into folders a clone does not have. */
  const ABSOLUTE = /(['"`])(\/(?:work|home|Users|root|mnt)\/[^'"`\n]*)\1/g

  function outside (path: string): boolean {
    const rel = relative(ROOT, path)
    return rel === '..' || rel.startsWith(`..${sep}`) || resolve(ROOT, rel) !== path
  }

  /** Each path reference in `source` (a file at `file`) that leaves the repository, with its line. */
  function escapes (file: string, source: string): string[] {
    const found: string[] = []
    const lines = source.split('\n')
    lines.forEach((line, index) => {
      const where = `${relative(ROOT, file)}:${index + 1}`
      for (const match of line.matchAll(CHAIN)) {
        const segments = [...(match[1] ?? '').matchAll(SEGMENT)].map(segment => segment[2] ?? '')
        const target = resolve(dirname(file), ...segments)
        if (outside(target)) found.push(`${where}: ${match[0]}`)
      }
      for (const match of line.matchAll(LITERAL)) {
        if (outside(resolve(dirname(file), match[2] ?? ''))) found.push(`${where}: ${match[0]}`)
      }
      for (const match of line.matchAll(ABSOLUTE)) found.push(`${where}: ${match[0]}`)
      if (/\bshared[\\/]vectors\b/.test(line)) found.push(`${where}: names shared/vectors`)
    })
    return [...new Set(found)]
  }

  function testFiles (dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap(entry => {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) return path === FIXTURES ? [] : testFiles(path)
      return SOURCE.test(entry.name) ? [path] : []
    })
  }

  t.test('the checker finds the ways a test can reach outside the repository', async t => {
    const file = join(ROOT, 'test', 'example.test.ts')
    const nested = join(ROOT, 'test', 'e2e', 'example.test.ts')
    const cases: Array<[string, string, boolean]> = [
      ['join from the file\'s folder', "const V = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'vectors', 'entra')", true],
      ['join staying inside', "const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')", false],
      ['resolve with import.meta.dirname', "resolve(import.meta.dirname, '../../other')", true],
      // Spelled in pieces, so this file itself never names the folder it tests for.
      ['relative literal', `readFileSync('${['..', '..', 'shared', 'vectors', 'entra', '04.jwt'].join('/')}')`, true],
      ['URL relative to the module', "new URL('../../x.json', import.meta.url)", true],
      ['relative import inside', "import { x } from '../src/index.js'", false],
      ['absolute path', `readFileSync('${['', 'work', 'shared', 'vectors', 'entra', '04.jwt'].join('/')}')`, true],
      ['fixture helper', "readFixture('entra', '04-v2-delegated-access-token.navikt.jwt')", false],
      ['a traversal string sent as data', "const header = { kid: '../../../../etc/passwd' }", false]
    ]
    for (const [name, line, escaping] of cases) t.equal(escapes(file, line).length > 0, escaping, name)
    t.equal(escapes(nested, "import t from '../../src/index.js'").length, 0, 'two levels up from test/e2e is still inside')
    t.equal(escapes(nested, "new URL('../../../x', import.meta.url)").length, 1, 'three levels up from test/e2e is outside')
  })

  t.test('no test file references a path outside the repository', async t => {
    // This file is left out: its own examples above are the references it looks for.
    const self = fileURLToPath(import.meta.url)
    const files = testFiles(join(ROOT, 'test')).filter(file => file !== self)
    t.ok(files.length > 10, `scanned ${files.length} files`)
    const found = files.flatMap(file => escapes(file, readFileSync(file, 'utf8')))
    t.same(found, [], 'vendor what a test needs under test/fixtures/ (see its README)')
  })
})
