import type { FakeHttpResponse } from './oauth.js'
import type { SignedInUser } from './users.js'

export interface SignInPageModel {
  action: string
  clientId: string
  asked: string[]
  users: Array<{ user: SignedInUser, scopes: string[] }>
  loginHint?: string
  error?: string
}

/** OWASP XSS prevention, rules 1 and 2. */
export function escapeHtml (value: string): string {
  return value.replace(/[&<>"'`=]/g, char => `&#${char.charCodeAt(0)};`)
}

function list (values: string[], none: string): string {
  return values.length === 0 ? `<span class="none">${escapeHtml(none)}</span>` : values.map(value => `<code>${escapeHtml(value)}</code>`).join(' ')
}

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:62rem;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.35rem;margin:0 0 .25rem}.fake{background:#fff4ce;border:1px solid #e8c24a;padding:.5rem .75rem;border-radius:4px}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
code{background:#f3f3f3;padding:0 .25rem;border-radius:3px;font-size:.9em}.none{color:#777}
button{font:inherit;white-space:nowrap;padding:.3rem .8rem;border:1px solid #0067b8;background:#0067b8;color:#fff;border-radius:3px;cursor:pointer}
fieldset{border:1px solid #ccc;border-radius:4px}label{display:inline-block;margin:.25rem 1rem .25rem 0}input{font:inherit;padding:.2rem .35rem}
.error{color:#a4262c;font-weight:600}`

export function signInPage (model: SignInPageModel, status = 200): FakeHttpResponse {
  const action = escapeHtml(model.action)
  const rows = model.users.map(({ user, scopes }) => `<tr>
<td>${escapeHtml(user.name)}</td><td><code>${escapeHtml(user.username)}</code></td><td><code>${escapeHtml(user.oid)}</code></td>
<td>${list(user.roles, 'none')}</td><td>${list(scopes, 'none of those asked (consent_required)')}</td>
<td><button type="submit" name="user" value="${escapeHtml(user.oid)}">Sign in as ${escapeHtml(user.name)}</button></td>
</tr>`).join('\n')
  const body = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer">
<title>Sign in: fake Entra ID</title><style>${STYLE}</style></head>
<body>
<h1>Sign in to <code>${escapeHtml(model.clientId)}</code></h1>
<p class="fake">Fake Microsoft Entra ID, for development and tests only: it signs anyone in without a password.</p>
<p>The app asks for ${list(model.asked, 'nothing')}.</p>
<form method="post" action="${action}">
<table>
<thead><tr><th>Name</th><th>preferred_username</th><th>oid</th><th>App roles</th><th>Scopes granted</th><th></th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</form>
<form method="post" action="${action}">
<fieldset><legend>Someone else, for this sign-in only</legend>
${model.error === undefined ? '' : `<p class="error" role="alert">${escapeHtml(model.error)}</p>\n`}<label>Username <input name="username" required placeholder="name@domain" value="${escapeHtml(model.loginHint ?? '')}"></label>
<label>App roles <input name="roles" placeholder="RoleA, RoleB"></label>
<button type="submit" name="one-off" value="1">Sign in</button>
</fieldset>
</form>
</body>
</html>
`
  return {
    status,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      pragma: 'no-cache',
      // No script, no framing (a sign-in page in a frame is clickjacking bait), no referrer to the app.
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer'
    },
    body
  }
}

export function notOnLoopback (): FakeHttpResponse {
  return {
    status: 403,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
    body: 'The fake Entra ID shows its sign-in page to loopback clients only: it signs anyone in without a password.\n'
  }
}
