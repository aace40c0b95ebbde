/**
 * The code a user copies compiles: every ```ts block of the README, CONTRIBUTING and docs/, and
 * every ```ts `@example` of the public API's TSDoc, is written to its own module under
 * .tap/doc-examples/ and type-checked by `tsc` (strict, `nodenext`) against the built package,
 * imported as a user imports it
 * (`fastify-entra-auth`, resolved by package self-reference to dist/). Examples are fragments:
 * names they use without defining (`app`, `handler`, `clientId`, …) are declared once in
 * globals.d.ts below, with the types a user's own code would give them. A deliberately broken
 * example proves that errors are reported. ```js blocks (MSAL snippets for packages this one
 * doesn't depend on) are parsed as ES modules by TypeScript, without type-checking.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readdirSync } from 'node:fs'
import { promisify } from 'node:util'
import t from 'tap'
import ts from 'typescript'
import { ensureBuilt, ROOT } from '../helpers/build.js'

t.setTimeout(240_000)

interface Example { name: string, source: string, code: string, js?: boolean }

/** ```ts and ```js blocks of a Markdown text (top level or indented in a list), with their line. */
function markdownBlocks (file: string, text: string): Example[] {
  const examples: Example[] = []
  for (const match of text.matchAll(/^( *)```(ts|js)\n([\s\S]*?)^\1```$/gm)) {
    const line = text.slice(0, match.index).split('\n').length
    const indent = match[1] ?? ''
    const code = (match[3] ?? '').split('\n').map(l => l.startsWith(indent) ? l.slice(indent.length) : l).join('\n')
    examples.push({ name: `${file.replaceAll(/\W/g, '-')}-${line}`, source: `${file}:${line}`, code, js: match[2] === 'js' })
  }
  return examples
}

/** The Markdown files users copy code from. */
function userDocs (): string[] {
  const docs = readdirSync(join(ROOT, 'docs')).filter(file => file.endsWith('.md')).sort().map(file => `docs/${file}`)
  return ['README.md', 'CONTRIBUTING.md', ...docs]
}

/** ```ts blocks inside `@example` tags of a source file's doc comments. */
function tsdocExamples (file: string, text: string): Example[] {
  const examples: Example[] = []
  for (const match of text.matchAll(/@example\s*\n((?:\s*\*.*\n)*?)\s*\*\s*```ts\n((?:\s*\*.*\n)*?)\s*\*\s*```/g)) {
    const line = text.slice(0, match.index).split('\n').length
    const code = (match[2] ?? '').split('\n').map(l => l.replace(/^\s*\* ?/, '')).join('\n')
    examples.push({ name: `${file.replaceAll(/\W/g, '-')}-${line}`, source: `${file}:${line}`, code })
  }
  return examples
}

/** The modules of the public API: what src/index.ts and src/testing/index.ts export from. */
function publicModules (): string[] {
  const modules = new Set<string>(['src/index.ts', 'src/testing/index.ts'])
  for (const entry of ['src/index.ts', 'src/testing/index.ts']) {
    const dir = entry.slice(0, entry.lastIndexOf('/'))
    for (const [, path] of readFileSync(join(ROOT, entry), 'utf8').matchAll(/from '(\.[^']+)\.js'/g)) {
      modules.add(join(dir, `${path}.ts`))
    }
  }
  return [...modules].sort()
}

/** Names the examples use as a user's surrounding code would define them. */
const GLOBALS = `import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import '@fastify/auth'
import '@fastify/session'

declare module 'fastify' {
  interface FastifyInstance {
    /** The README's second @fastify/auth strategy. */
    verifyApiKey: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

declare global {
  const app: FastifyInstance
  const handler: RouteHandlerMethod
  const request: FastifyRequest
  const reply: FastifyReply
  const clientId: string
  const tenant: string
  const accessToken: string
  const token: string
  const secret: string
  const FILES_API_ID: string
  const ADMIN_API_ID: string
  const verifier: import('fastify-entra-auth').EntraVerifier
  const options: import('fastify-entra-auth').EntraAuthOptions
  const client: import('fastify-entra-auth/testing').MockJwtClient
  function publicFeed (): unknown
  function feedFor (objectId: string | undefined): unknown
  function transfer (body: unknown): unknown
  function refresh (): void
  // Imports the fragments leave out.
  const entraAuth: typeof import('fastify-entra-auth').default
  const EntraAuthError: typeof import('fastify-entra-auth').EntraAuthError
  type EntraAuthError = import('fastify-entra-auth').EntraAuthError
  type EntraAuthDecorator = import('fastify-entra-auth').EntraAuthDecorator
  const supportsClaimsChallenge: typeof import('fastify-entra-auth').supportsClaimsChallenge
  const buildClaimsChallenge: typeof import('fastify-entra-auth').buildClaimsChallenge
  const swagger: typeof import('@fastify/swagger').default
  const fastifyAuth: typeof import('@fastify/auth').default
  const fastifyCookie: typeof import('@fastify/cookie').default
  const fastifySession: typeof import('@fastify/session').default
}
export {}
`

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2024'],
    types: ['node'],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    noUnusedLocals: false
  },
  include: ['*.ts']
}

t.test('README, docs/ and TSDoc examples type-check against the built package', async t => {
  await ensureBuilt(['dist/index.js', 'dist/index.d.ts', 'dist/testing/index.d.ts'])
  const examples = [
    ...userDocs().flatMap(file => markdownBlocks(file, readFileSync(join(ROOT, file), 'utf8'))),
    ...publicModules().flatMap(file => tsdocExamples(file, readFileSync(join(ROOT, file), 'utf8')))
  ]
  t.ok(examples.filter(e => e.source.startsWith('README.md')).length >= 3, 'README blocks found')
  t.ok(examples.filter(e => e.source.startsWith('docs/') && e.js !== true).length >= 15, 'docs/ blocks found')
  t.ok(examples.some(e => e.js === true), 'js blocks found')
  t.ok(examples.filter(e => e.source.startsWith('src/')).length >= 5, 'TSDoc examples found')

  // Inside the package, so `fastify-entra-auth` resolves to it (self-reference) and to its
  // node_modules; the root package.json ("type": "module") makes each file an ES module.
  const dir = join(ROOT, '.tap', 'doc-examples')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2))
  writeFileSync(join(dir, 'globals.d.ts'), GLOBALS)
  const canary = { name: 'canary', source: 'a broken example', code: "const port: number = 'not a number'\n" }
  const jsCanary = { name: 'js-canary', source: 'a broken js example', code: 'const = 1\n', js: true }
  const syntaxErrors = (example: Example): string[] => (ts.transpileModule(example.code, {
    fileName: `${example.name}.mjs`, reportDiagnostics: true, compilerOptions: { allowJs: true, module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }
  }).diagnostics ?? []).map(d => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
  t.ok(syntaxErrors(jsCanary).length > 0, 'a broken js example is reported')
  const js = examples.filter(e => e.js === true)
  t.same(Object.fromEntries(js.map((e): [string, string[]] => [e.source, syntaxErrors(e)]).filter(([, errors]) => errors.length > 0)), {}, 'every js example parses')
  const byFile = new Map<string, Example>()
  for (const example of [...examples.filter(e => e.js !== true), canary]) {
    const file = `${example.name}.ts`
    // `export {}` makes every example a module, so `declare module` blocks augment, never replace.
    writeFileSync(join(dir, file), `${example.code}\nexport {}\n`)
    byFile.set(file, example)
  }

  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const output = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], { cwd: dir, maxBuffer: 16 * 1024 * 1024 })
    .then(() => '', (err: { stdout?: string }) => err.stdout ?? String(err))
  const errors = new Map<string, string[]>()
  for (const line of output.split('\n')) {
    const match = /^([\w.-]+\.ts)\((\d+),\d+\): error (.*)$/.exec(line)
    if (match === null) continue
    const example = byFile.get(match[1] as string)
    const where = example === undefined ? match[1] as string : example.source
    errors.set(where, [...(errors.get(where) ?? []), `line ${match[2]} of the example: ${match[3]}`])
  }
  t.ok(errors.has(canary.source), 'a broken example is reported')
  errors.delete(canary.source)
  t.same(Object.fromEntries(errors), {}, 'every example compiles')
  t.notMatch(output.replace(/^.*canary\.ts.*$/gm, ''), /error TS/, 'no other error')
})
