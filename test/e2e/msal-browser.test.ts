/**
 * The whole loop in a real browser: `npm start` (examples/start.js) serves the example API, its
 * fake Entra and the example SPA; headless Chromium (Debian's package, driven by playwright-core)
 * signs in with MSAL Browser on the fake's sign-in page, calls the API, lets the access token
 * expire (the browser's clock jumps two hours) so that `acquireTokenSilent` redeems the refresh
 * token, switches to a user without the scope (403 problem shown) and signs out.
 *
 * UPDATE_SCREENSHOTS=1 writes the sign-in page to docs/images/fake-entra-sign-in.png.
 * CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { ensureBuilt, ROOT } from '../helpers/build.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const STARTUP_TIMEOUT = 60_000
/** Generous per step: a 2-core CI machine under load renders slowly, but nothing here waits on time. */
const STEP_TIMEOUT = 60_000

t.setTimeout(300_000)

/** Runs `npm start`'s script and resolves with its output once it is listening. */
async function startExample (t: Test): Promise<string> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ENTRA_') && name !== 'PORT'))
  const child = spawn(process.execPath, ['examples/start.js'], { cwd: ROOT, env: { ...clean, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT') })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const deadline = Date.now() + STARTUP_TIMEOUT
  while (!output.includes('Press Ctrl-C')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`start.js did not start:\n${output}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return output
}

async function launch (t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())
  return browser
}

/** Clicks the route's button and returns the newest answer shown for it. */
async function call (page: Page, path: string): Promise<{ status: string, text: string }> {
  const before = await page.locator(`.answer[data-route="${path}"]`).count()
  await page.getByRole('button', { name: `GET ${path}`, exact: true }).click()
  const answers = page.locator(`.answer[data-route="${path}"]`)
  await answers.nth(before).waitFor({ timeout: STEP_TIMEOUT })
  const answer = answers.first()
  return { status: await answer.getAttribute('data-status') ?? '', text: await answer.innerText() }
}

/** On the fake's sign-in page: picks the user by its button. */
async function pick (page: Page, label: string): Promise<void> {
  await page.getByRole('button', { name: label, exact: true }).click()
  await page.waitForURL(url => url.pathname.endsWith('/spa/'), { timeout: STEP_TIMEOUT })
  await page.locator('body[data-ready="true"]').waitFor({ timeout: STEP_TIMEOUT })
}

t.test('MSAL Browser in Chromium: sign in, call the API, refresh, switch user, sign out', async t => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no Chromium at ${CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`)
    return
  }
  await ensureBuilt(['dist/index.js', 'dist/testing/index.js'])
  const output = await startExample(t)
  const spa = /^Single-page app \(MSAL Browser\): (http:\/\/127\.0\.0\.1:\d+\/spa\/)$/m.exec(output)?.[1]
  t.ok(spa, 'npm start prints the SPA\'s URL')
  const browser = await launch(t)
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } })
  page.setDefaultTimeout(STEP_TIMEOUT)
  const tokenRequests: string[] = []
  page.on('request', request => {
    if (request.method() === 'POST' && new URL(request.url()).pathname.endsWith('/oauth2/v2.0/token')) tokenRequests.push(new URLSearchParams(request.postData() ?? '').get('grant_type') ?? '')
  })

  await page.goto(spa as string)
  await page.locator('body[data-ready="true"]').waitFor()
  t.equal(await page.locator('#who').innerText(), 'Not signed in.')

  // Sign in: MSAL sends the browser to the fake's authorize endpoint, which shows its page.
  await page.getByRole('button', { name: 'Sign in', exact: true }).click()
  await page.waitForURL(url => url.pathname.endsWith('/oauth2/v2.0/authorize'))
  t.equal(await page.title(), 'Sign in: fake Entra ID')
  t.ok(await page.getByRole('button', { name: 'Sign in as Grace Hopper' }).isVisible(), 'the page lists the test users')
  const screenshot = await page.screenshot({ fullPage: true })
  t.same([...screenshot.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG of the sign-in page')
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(join(ROOT, 'docs', 'images'), { recursive: true })
    writeFileSync(join(ROOT, 'docs', 'images', 'fake-entra-sign-in.png'), screenshot)
  }
  await pick(page, 'Sign in as Ada Lovelace')
  t.match(await page.locator('#who').innerText(), /^Signed in as Ada Lovelace \(ada@contoso\.example\), oid [\da-f-]{36}$/)
  const ada = await page.locator('#who').getAttribute('data-oid') as string
  t.same(tokenRequests, ['authorization_code'], 'MSAL redeemed the code')

  // A user with the scope: 200, with that user's oid.
  const files = await call(page, '/files')
  t.equal(files.status, '200')
  t.match(files.text, `"owner": "${ada}"`)
  const claims = JSON.parse(await page.locator('#claims').innerText()) as Record<string, unknown>
  t.match(claims, { oid: ada, scp: 'access_as_user Files.Read', preferred_username: 'ada@contoso.example', roles: ['Admin'] }, "the SPA shows the token's claims")
  const me = await call(page, '/me')
  t.equal(me.status, '200')
  t.match(me.text, /token from MSAL's cache/)
  t.equal(tokenRequests.length, 1, 'the second call used the cached token')
  // SPA → API → downstream API: /data trades the token on the user's behalf (server side).
  const data = await call(page, '/data')
  t.equal(data.status, '200')
  t.match(data.text, `"objectId": "${ada}"`, 'the downstream API sees the same user')

  // Two hours later (on the browser's clock) the access token has expired: the refresh token gets a new one.
  await page.clock.setFixedTime(Date.now() + 2 * 60 * 60 * 1000)
  const later = await call(page, '/me')
  t.equal(later.status, '200')
  t.match(later.text, /token from the token endpoint/)
  t.match(later.text, `"objectId": "${ada}"`)
  t.same(tokenRequests, ['authorization_code', 'refresh_token'], 'acquireTokenSilent redeemed the refresh token')
  const refreshed = JSON.parse(await page.locator('#claims').innerText()) as Record<string, unknown>
  t.not(refreshed.uti, claims.uti, 'a new access token')

  // Switch to a user who lacks the scope: the API's 403 problem is shown.
  await page.getByRole('button', { name: 'Switch user' }).click()
  await page.waitForURL(url => url.pathname.endsWith('/oauth2/v2.0/authorize'))
  await pick(page, 'Sign in as Grace Hopper')
  t.match(await page.locator('#who').innerText(), /^Signed in as Grace Hopper \(grace@contoso\.example\)/)
  const grace = await page.locator('#who').getAttribute('data-oid') as string
  t.not(grace, ada)
  const refused = await call(page, '/files')
  t.equal(refused.status, '403')
  t.match(refused.text, /application\/problem\+json/)
  t.match(refused.text, /"type": "auth_token_insufficient_scopes"/)
  t.match(refused.text, /"status": 403/)
  const graceMe = await call(page, '/me')
  t.equal(graceMe.status, '200')
  t.match(graceMe.text, `"objectId": "${grace}"`)

  // Sign out: MSAL's cache is cleared.
  await page.getByRole('button', { name: "Sign out (clear MSAL's cache)" }).click()
  await page.locator('#who', { hasText: 'Not signed in.' }).waitFor()
  t.equal(await page.getByRole('button', { name: 'GET /files', exact: true }).isDisabled(), true)
  await page.reload()
  await page.locator('body[data-ready="true"]').waitFor()
  t.equal(await page.locator('#who').innerText(), 'Not signed in.', 'still signed out after a reload')
})
