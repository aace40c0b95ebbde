/**
 * The examples and the CLI run the compiled package (dist/). CI runs `npm run build` before
 * `npm test`; a developer may not have, or may have edited src/ since. `ensureBuilt()` runs
 * `npm run build` when a needed dist file is missing or older than the newest file in src/.
 * Test files run in parallel, so builds are serialised with a lock directory, and a test never
 * reads dist/ while another one is rebuilding it.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { ROOT } from './fixtures.js'

export { ROOT }

const LOCK = join(ROOT, '.tap', 'build.lock')
/** A lock older than this was left by a killed run. */
const STALE_LOCK_MS = 180_000

function mtime (path: string): number {
  try {
    return statSync(path).mtimeMs
  } catch {
    return -Infinity
  }
}

function newestSource (): number {
  const src = join(ROOT, 'src')
  return Math.max(...readdirSync(src, { recursive: true, encoding: 'utf8' }).map(file => mtime(join(src, file))))
}

function fresh (files: string[]): boolean {
  const newest = newestSource()
  return files.every(file => mtime(join(ROOT, file)) >= newest)
}

function tryLock (): boolean {
  mkdirSync(dirname(LOCK), { recursive: true })
  try {
    mkdirSync(LOCK)
    return true
  } catch {
    if (Date.now() - mtime(LOCK) > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true })
    return false
  }
}

/** Builds the package unless `files` (relative to the root) are present and newer than src/. */
export async function ensureBuilt (files: string[] = ['dist/index.js', 'dist/testing/index.js', 'dist/cli.js', 'dist/inspect/validate.js']): Promise<void> {
  while (!tryLock()) await new Promise(resolve => setTimeout(resolve, 100))
  try {
    if (!fresh(files)) await promisify(execFile)('npm', ['run', 'build', '--silent'], { cwd: ROOT, timeout: 120_000 })
  } finally {
    rmSync(LOCK, { recursive: true, force: true })
  }
}

/** What a run of the built CLI gave. */
export interface CliRun { code: number | null, stdout: string, stderr: string }

/** Runs the built CLI (`node dist/cli.js …`) as a process, with `input` on its stdin. */
export function runCli (args: string[], input?: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.once('error', reject)
    child.once('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    child.stdin.end(input ?? '')
  })
}

/**
 * The example's loopback identity provider (examples/fake-entra-server.js) for `tenantId`, serving
 * `jwks` as its key set, closed when `t` ends. Returns its discovery URL.
 */
export async function loopbackEntra (t: { teardown: (fn: () => unknown) => void }, tenantId: string, jwks: unknown): Promise<string> {
  const { startFakeEntra } = await import(new URL('../../examples/fake-entra-server.js', import.meta.url).href) as {
    startFakeEntra: (options: { tenantId: string }) => Promise<{ entra: { jwksDocument: unknown }, oidcEndpoint: string, close: () => Promise<void> }>
  }
  const provider = await startFakeEntra({ tenantId })
  t.teardown(() => provider.close())
  provider.entra.jwksDocument = jwks
  return provider.oidcEndpoint
}
