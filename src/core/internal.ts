/** Internal options: symbol keys never collide with (or are refused as) user options. */

/** The test suite moves time instead of sleeping. */
export const kKeyStoreClock: unique symbol = Symbol.for('fastify-entra-auth.internal.keyStoreClock')

export function keyStoreClockOf (options: unknown): (() => number) | undefined {
  const clock = (options as { [kKeyStoreClock]?: unknown } | null)?.[kKeyStoreClock]
  return typeof clock === 'function' ? clock as () => number : undefined
}

/** The route hook answers cache hits through it without awaiting. */
export const kFromCache: unique symbol = Symbol('fastify-entra-auth.internal.fromCache')

/** The cache missed: synchronous when it can be, else a promise. */
export const kCheckUncached: unique symbol = Symbol('fastify-entra-auth.internal.checkUncached')

/** The plugin's verifier on the instance, whatever the `decorator` name (for claims challenges). */
export const kVerifier: unique symbol = Symbol('fastify-entra-auth.verifier')
