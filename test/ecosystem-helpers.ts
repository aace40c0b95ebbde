/** Shared fixtures of the `ecosystem-*` tests: a fake Entra per test and a client ID. */
import type { FastifyInstance } from 'fastify'
import type { EntraAuthDecorator } from '../src/index.js'
import { FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'

export const API_ID = '11111111-2222-4333-8444-555555555555'
export const OTHER_API_ID = '99999999-8888-4777-8666-555555555555'

interface Teardown { teardown: (fn: () => unknown) => void }

/** A fake Entra closed when the test ends. */
export function fakeEntra (t: Teardown, options: FakeEntraOptions = {}): FakeEntra {
  const entra = new FakeEntra(options)
  t.teardown(async () => { await entra.close() })
  return entra
}

/** Closes `app` when the test ends. */
export function closing<T extends FastifyInstance> (t: Teardown, app: T): T {
  t.teardown(async () => { await app.close() })
  return app
}

/** The decorator of a registration that was given another `decorator` name. */
export function decoratorOf (app: FastifyInstance, name: string): EntraAuthDecorator {
  return (app as unknown as Record<string, EntraAuthDecorator>)[name] as EntraAuthDecorator
}

export function bearer (token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}
