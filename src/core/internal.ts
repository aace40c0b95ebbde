/** Internal options: symbol keys never collide with (or are refused as) user options. */

export const kKeyStoreClock: unique symbol = Symbol.for('fastify-entra-auth.internal.keyStoreClock')

export function keyStoreClockOf (options: unknown): (() => number) | undefined {
  const clock = (options as { [kKeyStoreClock]?: unknown } | null)?.[kKeyStoreClock]
  return typeof clock === 'function' ? clock as () => number : undefined
}

export const kFromCache: unique symbol = Symbol('fastify-entra-auth.internal.fromCache')

export const kCheckUncached: unique symbol = Symbol('fastify-entra-auth.internal.checkUncached')

/** The plugin's verifier on the instance, whatever the `decorator` name (for claims challenges). */
export const kVerifier: unique symbol = Symbol('fastify-entra-auth.verifier')
