import { FAKE_USER_ID, GRAPH_APP_ID, OAuthError, stableGuid, type FakeAuthorizationOptions, type FakeEntraUser, type ParsedScopes } from './oauth.js'

/** A test user with defaults filled in: who a code, a refresh token and their tokens stand for. */
export interface SignedInUser {
  oid: string
  name: string
  username: string
  roles: string[]
  /** Delegated scopes the user consented to; `undefined`: any scope asked for. */
  scopes: string[] | undefined
}

const DEFAULT_USERNAME = 'test.user@contoso.example'
/** A UPN is at most 113 characters (Microsoft Entra user property limits). */
const USERNAME = /^[^\s@<>"']{1,64}@[^\s@<>"']{1,48}$/
/** App role values hold no spaces (Entra's appRoles `value`). */
const ROLE = /^[^\s,]{1,120}$/

/** `ada.lovelace@contoso.example` → `Ada Lovelace`: a display name when none is given. */
export function nameFromUsername (username: string): string {
  const local = username.split('@')[0] ?? username
  return local.split(/[._-]+/).filter(word => word !== '').map(word => word[0]?.toUpperCase() + word.slice(1)).join(' ') || local
}

function resolve (user: FakeEntraUser, fallbackOid: string | undefined): SignedInUser {
  const username = user.username ?? DEFAULT_USERNAME
  return {
    // One username keeps its object ID across restarts, as a directory's user would.
    oid: user.oid ?? fallbackOid ?? stableGuid(`user:${username.toLowerCase()}`),
    name: user.name ?? (user.username === undefined ? 'Test User' : nameFromUsername(username)),
    username,
    roles: [...(user.roles ?? [])],
    scopes: user.scopes === undefined ? undefined : [...user.scopes]
  }
}

/**
 * The test users, the default one first (`user`, else the first of `users`, else Test User).
 * Throws a `TypeError` naming the option when two users share an object ID or a username.
 */
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

/**
 * A user typed into the sign-in page's one-off form: `username` (`name@domain`) and app roles
 * separated by commas or spaces. Throws an `OAuthError` saying what is wrong.
 */
export function oneOffUser (username: string, roles: string): SignedInUser {
  const trimmed = username.trim()
  if (!USERNAME.test(trimmed)) throw new OAuthError('invalid_request', 50034, 'Enter a username of the form name@domain (no spaces or quotes, at most 113 characters).')
  const roleList = roles.split(/[\s,]+/).filter(role => role !== '')
  if (roleList.length > 20 || !roleList.every(role => ROLE.test(role))) throw new OAuthError('invalid_request', 50034, 'App roles are up to 20 role values separated by commas, without spaces inside a value.')
  return resolve({ username: trimmed, roles: [...new Set(roleList)] }, undefined)
}

/**
 * The scopes of a grant that `user` has consented to. Sign-in scopes (a Microsoft Graph grant)
 * are not capped; an API's are narrowed to the user's `scopes`.
 */
export function consentedScopes (user: SignedInUser, resource: ParsedScopes['resource'], scopes: string[]): string[] {
  if (user.scopes === undefined || resource.clientId === GRAPH_APP_ID) return scopes
  return scopes.filter(scope => (user.scopes as string[]).includes(scope))
}
