/**
 * Type tests (against the emitted `dist/*.d.ts`) of the Entra options added for B2C and SaaS
 * apps: `requirePermissions` and the predicate form of `allowedTenants`.
 */
import { expect, test } from 'tstyche'
import { createEntraVerifier, type EntraAuthOptions, type EntraTenantPredicate, type EntraToken, type ProblemType } from 'fastify-entra-auth'

test('requirePermissions is a boolean option of the plugin and the verifier', () => {
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'organizations', requirePermissions: false })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'organizations', requirePermissions: 'no' })
  expect(createEntraVerifier).type.toBeCallableWith({ clientId: 'id', tenant: 'organizations', requirePermissions: true })
})

test('allowedTenants: a list of tenant IDs, or a sync or async predicate', () => {
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'organizations', allowedTenants: ['72f988bf-86f1-41af-91ab-2d7cd011db47'] })
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'organizations', allowedTenants: (tenantId: string) => tenantId.length > 0 })
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'organizations', allowedTenants: async (_tenantId: string, token: EntraToken) => token.isAppOnly })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'organizations', allowedTenants: (tenantId: string) => tenantId })
  expect<Parameters<EntraTenantPredicate>>().type.toBe<[tenantId: string, token: EntraToken]>()
})

test('auth_tenant_check_error is a problem type', () => {
  expect<ProblemType>().type.toBeAssignableFrom('auth_tenant_check_error' as const)
})
