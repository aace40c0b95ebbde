/**
 * The suite runs on a fresh clone with nothing beside it: no test file may name a path outside
 * the repository (such as a vectors folder in a `shared` folder next to the clone). Every file under test/
 * (fixtures aside) is scanned for relative paths, `join`/`resolve` chains from the file's own
 * folder and `new URL(…, import.meta.url)` that resolve outside the repository root, and for
 * absolute paths into the machine's shared folders. Data a test needs is vendored under
 * test/fixtures/ and read with helpers/fixtures.ts.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { FIXTURES, ROOT } from './helpers/fixtures.js'

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
