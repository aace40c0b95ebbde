/**
 * Files vendored under test/fixtures/ (see test/fixtures/README.md for where each one comes
 * from). Tests read fixtures only through these functions, so no test reaches outside the
 * repository (the "self-contained" section of test/docs.test.ts checks that).
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const FIXTURES = join(ROOT, 'test', 'fixtures')

/** Absolute path of a fixture, e.g. `fixturePath('entra', '04-….jwt')`. */
export function fixturePath (...parts: string[]): string {
  return join(FIXTURES, ...parts)
}

/** A fixture's text, trimmed (token files end with a newline). */
export function readFixture (...parts: string[]): string {
  return readFileSync(fixturePath(...parts), 'utf8').trim()
}

/** A JSON fixture, parsed. */
export function readJsonFixture<T = unknown> (...parts: string[]): T {
  return JSON.parse(readFileSync(fixturePath(...parts), 'utf8')) as T
}
