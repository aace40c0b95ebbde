import { FAKE_USER_ID, GRAPH_APP_ID, OAuthError, stableGuid, type FakeAuthorizationOptions, type FakeEntraUser, type ParsedScopes } from './oauth.js'

export interface SignedInUser {
  oid: string
  name: string
  username: string
  roles: string[]
  scopes: string[] | undefined
}

const DEFAULT_USERNAME = 'test.user@contoso.example'
/** Entra's limits: a UPN is at most 113 characters; app role values hold no spaces. */
const USERNAME = /^[^\s@<>"']{1,64}@[^\s@<>"']{1,48}$/
const ROLE = /^[^\s,]{1,120}$/

export function nameFromUsername (username: string): string {
  const local = username.split('@')[0] ?? username
  return local.split(/[._-]+/).filter(word => word !== '').map(word => word[0]?.toUpperCase() + word.slice(1)).join(' ') || local
}

function resolve (user: FakeEntraUser, fallbackOid: string | undefined): SignedInUser {
  const username = user.username ?? DEFAULT_USERNAME
  return {
    oid: user.oid ?? fallbackOid ?? stableGuid(`user:${username.toLowerCase()}`),
    name: user.name ?? (user.username === undefined ? 'Test User' : nameFromUsername(username)),
    username,
    roles: [...(user.roles ?? [])],
    scopes: user.scopes === undefined ? undefined : [...user.scopes]
  }
}

export function testUsers (options: FakeAuthorizationOptions): SignedInUser[] {
  const users = options.user !== undefined || options.users === undefined || options.users.length === 0
    ? [resolve(options.user ?? {}, FAKE_USER_ID), ...(options.users ?? []).map(user => resolve(user, undefined))]
    : options.users.map(user => resolve(user, undefined))
  const seen = new Set<string>()
  for (const user of users) {
    for (const key of [`oid ${user.oid}`, `username ${user.username.toLowerCase()}`]) {
      if (seen.has(key)) throw new TypeError(`FakeEntra: two test users (user, users) have the same ${key}: give each its own oid and username`)
      seen.add(key)
    }
  }
  return users
}

export function oneOffUser (username: string, roles: string): SignedInUser {
  const trimmed = username.trim()
  if (!USERNAME.test(trimmed)) throw new OAuthError('invalid_request', 50034, 'Enter a username of the form name@domain (no spaces or quotes, at most 113 characters).')
  const roleList = roles.split(/[\s,]+/).filter(role => role !== '')
  if (roleList.length > 20 || !roleList.every(role => ROLE.test(role))) throw new OAuthError('invalid_request', 50034, 'App roles are up to 20 role values separated by commas, without spaces inside a value.')
  return resolve({ username: trimmed, roles: [...new Set(roleList)] }, undefined)
}

export function consentedScopes (user: SignedInUser, resource: ParsedScopes['resource'], scopes: string[]): string[] {
  if (user.scopes === undefined || resource.clientId === GRAPH_APP_ID) return scopes
  return scopes.filter(scope => (user.scopes as string[]).includes(scope))
}
