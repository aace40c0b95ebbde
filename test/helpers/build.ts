/**
 * The examples and the CLI run the compiled package (dist/). CI runs `npm run build` before
 * `npm test`; a developer may not have, or may have edited src/ since. `ensureBuilt()` runs
 * `npm run build` when a needed dist file is missing or older than the newest file in src/.
 * Test files run in parallel, so builds are serialised with a lock directory, and a test never
 * reads dist/ while another one is rebuilding it.
 */
import { execFile } from 'node:child_process'
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
export async function ensureBuilt (files: string[] = ['dist/index.js', 'dist/testing/index.js', 'dist/cli.js', 'dist/inspect.js']): Promise<void> {
  while (!tryLock()) await new Promise(resolve => setTimeout(resolve, 100))
  try {
    if (!fresh(files)) await promisify(execFile)('npm', ['run', 'build', '--silent'], { cwd: ROOT, timeout: 120_000 })
  } finally {
    rmSync(LOCK, { recursive: true, force: true })
  }
}
