/**
 * Internal options, not part of the public API: symbol keys, so they never collide with (or are
 * refused as) user options.
 */

/** `() => number` (monotonic ms) for the key store: the test suite moves time instead of sleeping. */
export const kKeyStoreClock: unique symbol = Symbol.for('fastify-entra-auth.internal.keyStoreClock')

/** Reads the internal key-store clock from raw options, if a test set one. */
export function keyStoreClockOf (options: unknown): (() => number) | undefined {
  const clock = (options as { [kKeyStoreClock]?: unknown } | null)?.[kKeyStoreClock]
  return typeof clock === 'function' ? clock as () => number : undefined
}

/**
 * A verifier's synchronous cache lookup (`(raw) => EntraToken | undefined`, throws for an expired
 * cached token): the plugin's route hook answers cache hits through it without awaiting.
 */
export const kFromCache: unique symbol = Symbol('fastify-entra-auth.internal.fromCache')

/**
 * Where the plugin leaves its verifier on the Fastify instance, whatever the `decorator` name
 * (the claims-challenge helper finds it there). A symbol: it can't clash with an app's names.
 */
export const kVerifier: unique symbol = Symbol('fastify-entra-auth.verifier')
