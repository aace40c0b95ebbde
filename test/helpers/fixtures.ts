/**
 * Files vendored under test/fixtures/ (see test/fixtures/README.md for where each one comes
 * from). Tests read fixtures only through these functions, so no test reaches outside the
 * repository (the "self-contained" section of test/docs.test.ts checks that).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto'
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

const keys = new Map<string, KeyObject>()

/**
 * A committed RSA private key of test/fixtures/keys/ (test-only, trusted nowhere): `foreign`, a
 * 2048-bit signer that is not the test kit's key; `e3`, 2048 bits with public exponent 3;
 * `rsa-1024`, too short to be accepted. Read instead of generated: a key pair costs 0.1–1.5 s.
 */
export function testKey (name: 'foreign' | 'e3' | 'rsa-1024'): KeyObject {
  let key = keys.get(name)
  if (key === undefined) keys.set(name, key = createPrivateKey(readFixture('keys', `${name}.pem`)))
  return key
}
