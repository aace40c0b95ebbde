/**
 * The example SPA: MSAL Browser (its browser build, loaded by index.html as the global `msal`)
 * signs a user in at the fake Entra, gets access tokens for the example API and calls its routes.
 * The MSAL setup is the one docs/fake-entra.md shows. Everything shown is set as text, never HTML.
 */
const { PublicClientApplication, InteractionRequiredAuthError } = window.msal

/** `{ clientId, authority, discovery, scopes }`, from the server that serves this page. */
const config = await (await fetch('config.json')).json()

// MSAL refuses http:// authorities and looks authorities up on the internet: give it Entra's
// authority for the fake's tenant, and the fake's discovery document so that it asks nothing else.
const msal = new PublicClientApplication({
  auth: {
    clientId: config.clientId,
    authority: config.authority,
    redirectUri: new URL('redirect.html', window.location.href).href,
    authorityMetadata: await (await fetch(config.discovery)).text(),
    cloudDiscoveryMetadata: JSON.stringify({
      tenant_discovery_endpoint: config.discovery,
      metadata: [{ preferred_network: 'login.microsoftonline.com', preferred_cache: 'login.microsoftonline.com', aliases: ['login.microsoftonline.com'] }]
    })
  },
  cache: { cacheLocation: 'sessionStorage' }
})
await msal.initialize()

const $ = id => document.getElementById(id)

function showError (err) {
  $('error').textContent = err === undefined ? '' : `${err.errorCode ?? err.name}: ${err.errorMessage || err.message}`
}

/** The payload of a JWT, decoded for display (the API validates it; this page only shows it). */
function claimsOf (jwt) {
  const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), char => char.charCodeAt(0))))
}

function render () {
  const account = msal.getActiveAccount()
  $('who').textContent = account === null
    ? 'Not signed in.'
    : `Signed in as ${account.name} (${account.username}), oid ${account.localAccountId}`
  $('who').dataset.oid = account?.localAccountId ?? ''
  $('sign-in').hidden = account !== null
  $('switch-user').hidden = account === null
  $('sign-out').hidden = account === null
  for (const button of $('routes').querySelectorAll('button')) button.disabled = account === null
}

/** Sends the user to the fake's sign-in page, which lists the test users. */
async function signIn () {
  await msal.loginRedirect({ scopes: config.scopes, prompt: 'select_account' })
}

/** An access token for the API: from MSAL's cache, else with the refresh token, else by signing in again. */
async function accessToken () {
  const account = msal.getActiveAccount()
  try {
    return await msal.acquireTokenSilent({ scopes: config.scopes, account })
  } catch (err) {
    if (err instanceof InteractionRequiredAuthError) await msal.acquireTokenRedirect({ scopes: config.scopes, account })
    throw err
  }
}

async function call (path) {
  showError()
  const answer = document.createElement('div')
  answer.className = 'answer'
  answer.dataset.route = path
  try {
    const token = await accessToken()
    $('claims').textContent = JSON.stringify(claimsOf(token.accessToken), null, 2)
    const response = await fetch(path, { headers: { authorization: `Bearer ${token.accessToken}` } })
    const body = await response.text()
    answer.dataset.status = String(response.status)
    const heading = document.createElement('strong')
    heading.textContent = `GET ${path} → ${response.status} ${response.headers.get('content-type') ?? ''} (token ${token.fromCache ? 'from MSAL\'s cache' : 'from the token endpoint'})`
    const pre = document.createElement('pre')
    try {
      pre.textContent = JSON.stringify(JSON.parse(body), null, 2)
    } catch {
      pre.textContent = body
    }
    answer.append(heading, pre)
    $('answers').prepend(answer)
  } catch (err) {
    showError(err)
  }
}

$('sign-in').addEventListener('click', () => { signIn().catch(showError) })
$('switch-user').addEventListener('click', () => { signIn().catch(showError) })
$('sign-out').addEventListener('click', () => {
  // The fake has no sign-out endpoint: forgetting the accounts and tokens is this app's sign-out.
  msal.clearCache().then(() => {
    msal.setActiveAccount(null)
    $('answers').replaceChildren()
    $('claims').textContent = '(no token yet)'
    render()
  }, showError)
})

// The API lists its routes at `/`; a button for each protected one.
const { routes } = await (await fetch('/')).json()
for (const { path, needs } of routes.filter(route => route.path !== '/')) {
  const button = document.createElement('button')
  button.textContent = `GET ${path}`
  button.title = `needs ${needs}`
  button.addEventListener('click', () => { call(path) })
  $('routes').append(button)
}

try {
  const result = await msal.handleRedirectPromise()
  if (result !== null) msal.setActiveAccount(result.account)
  else if (msal.getActiveAccount() === null && msal.getAllAccounts().length > 0) msal.setActiveAccount(msal.getAllAccounts()[0])
} catch (err) {
  showError(err)
}
render()
document.body.dataset.ready = 'true'
