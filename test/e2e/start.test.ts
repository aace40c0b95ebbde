/**
 * `npm start` end to end: spawns examples/start.js (what `npm start` runs after building; the
 * build is done here by ensureBuilt, so the test also works from a clean clone), reads the curl
 * commands it prints, runs each one with fetch and checks it does what its comment says, then
 * stops the process with SIGINT as Ctrl-C would.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { ensureBuilt, ROOT } from '../helpers/build.js'

interface FakeEntraServer {
  entra: { client: (clientId: string, preset?: 'v2' | 'v1' | 'app') => { generate: (overrides?: Record<string, unknown>) => string } }
  oidcEndpoint: string
  close: () => Promise<void>
}

/** Generous: the first run of a process may compile and warm up slowly on a busy CI machine. */
const STARTUP_TIMEOUT = 60_000

t.setTimeout(240_000)
await ensureBuilt(['dist/index.js', 'dist/testing/index.js'])

interface Started {
  child: ChildProcess
  output: () => string
  errors: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Runs examples/start.js with a clean environment plus `env`; killed at teardown if still running. */
function start (t: Test, env: Record<string, string>): Started {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ENTRA_') && name !== 'PORT' && name !== 'LOG_LEVEL'))
  const child = spawn(process.execPath, ['examples/start.js'], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { child, output: () => stdout, errors: () => stderr, exited }
}

/** Resolves with the output once it matches `pattern`; rejects if the process exits first or on timeout. */
async function waitFor (started: Started, pattern: RegExp): Promise<string> {
  const deadline = Date.now() + STARTUP_TIMEOUT
  let done = false
  started.exited.then(() => { done = true }, () => {})
  while (!pattern.test(started.output())) {
    if (done) throw new Error(`start.js exited before printing ${pattern}:\n${started.output()}\n${started.errors()}`)
    if (Date.now() > deadline) throw new Error(`start.js did not print ${pattern} within ${STARTUP_TIMEOUT} ms:\n${started.output()}\n${started.errors()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return started.output()
}

interface Example {
  why: string
  status: number
  type: string | undefined
  token: string | undefined
  url: string
}

/** Each printed example: a `# <path>: <why> → <status> [<problem type>]` line, then its curl command. */
function parseExamples (output: string): Example[] {
  const lines = output.split('\n')
  const examples: Example[] = []
  lines.forEach((line, i) => {
    const comment = /^ {2}# \/\S*: (.+) → (\d{3})(?: (\w+))?$/.exec(line)
    if (comment === null) return
    const command = /^ {2}curl (?:-i )?(?:-H 'Authorization: Bearer ([\w.-]+)' )?(http:\/\/127\.0\.0\.1:\d+\/\S*)$/.exec(lines[i + 1] ?? '')
    if (command === null) throw new Error(`no curl command after: ${line}`)
    examples.push({ why: comment[1] as string, status: Number(comment[2]), type: comment[3], token: command[1], url: command[2] as string })
  })
  return examples
}

async function call (url: string, token?: string): Promise<{ status: number, contentType: string | null, body: Record<string, unknown> }> {
  const response = await fetch(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) })
  return { status: response.status, contentType: response.headers.get('content-type'), body: await response.json() as Record<string, unknown> }
}

async function stop (t: Test, started: Started, signal: NodeJS.Signals): Promise<void> {
  started.child.kill(signal)
  const { code } = await started.exited
  t.equal(code, 0, `exits cleanly on ${signal}`)
  t.match(started.output(), `${signal}: shutting down`)
}

t.test('with no ENTRA_* variables: embedded fake Entra, printed curl commands work', async t => {
  const started = start(t, { PORT: '0' })
  const output = await waitFor(started, /Press Ctrl-C to stop\./)
  t.match(output, /example API on http:\/\/127\.0\.0\.1:\d+/)
  t.match(output, /issuer {4}https:\/\/login\.microsoftonline\.com\/[0-9a-f-]{36}\/v2\.0/, 'Entra-shaped issuer')
  t.match(output, /discovery http:\/\/127\.0\.0\.1:\d+\//, 'discovery on loopback')

  const examples = parseExamples(output)
  const valid = examples.filter(example => example.status === 200 && example.token !== undefined)
  const failing = examples.filter(example => example.status !== 200)
  t.ok(valid.length >= 4, 'a valid command per protected route')
  t.ok(failing.length >= 2, 'commands that fail, with the reason')
  t.same([...new Set(valid.map(example => new URL(example.url).pathname))].sort(), ['/admin', '/data', '/files', '/me', '/reports'])

  // The first valid command, and the same URL without its token.
  const first = valid[0] as Example
  const ok = await call(first.url, first.token)
  t.equal(ok.status, 200, `${first.why}: 200`)
  const anonymous = await call(first.url)
  t.equal(anonymous.status, 401, 'same URL without a token: 401')
  t.equal(anonymous.contentType, 'application/problem+json')
  t.equal(anonymous.body.type, 'auth_header_missing')

  // Every other printed command does what its comment says.
  for (const example of examples) {
    const response = await call(example.url, example.token)
    t.equal(response.status, example.status, `${example.why}: ${example.status}`)
    if (example.type !== undefined) {
      t.equal(response.contentType, 'application/problem+json')
      t.equal(response.body.type, example.type, `${example.why}: ${example.type}`)
    }
  }

  // The printed token-debugger command runs as printed (from the directory npm start ran in).
  const debug = /^ {2}node (\S+) inspect '([\w.-]+)' --client-id (\S+) --oidc-endpoint (\S+)$/m.exec(output)
  t.ok(debug, 'prints a token-debugger command')
  if (debug !== null) {
    const [, cli, token, clientId, endpoint] = debug as unknown as [string, string, string, string, string]
    const run = await new Promise<{ code: number | null, stdout: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [cli, 'inspect', token, '--client-id', clientId, '--oidc-endpoint', endpoint], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
      let stdout = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
      child.once('error', reject)
      child.once('close', code => resolve({ code, stdout }))
    })
    t.equal(run.code, 1, 'the expired token is invalid')
    t.match(run.stdout, /^INVALID: auth_token_expired/m)
  }

  await stop(t, started, 'SIGINT')
})

t.test('falls back to a free port when PORT is taken', async t => {
  const blocker = createServer()
  await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const taken = (blocker.address() as AddressInfo).port

  const started = start(t, { PORT: String(taken) })
  const output = await waitFor(started, /Press Ctrl-C to stop\./)
  const used = new RegExp(`port ${taken} is taken; using (\\d+)`).exec(output)?.[1]
  t.ok(used, 'says which port it uses instead')
  t.match(output, `example API on http://127.0.0.1:${used}`)
  t.equal((await call(`http://127.0.0.1:${used}/`)).status, 200)
  await stop(t, started, 'SIGTERM')
})

t.test('with ENTRA_CLIENT_ID and ENTRA_OIDC_ENDPOINT: protected by that provider', async t => {
  // A stand-in for a real tenant: the example's loopback fake, outside the process.
  const { startFakeEntra } = await import(new URL('../../examples/fake-entra-server.js', import.meta.url).href) as { startFakeEntra: () => Promise<FakeEntraServer> }
  const provider = await startFakeEntra()
  t.teardown(() => provider.close())
  const clientId = '11111111-2222-4333-8444-555555555555'

  const started = start(t, { PORT: '0', ENTRA_CLIENT_ID: clientId, ENTRA_OIDC_ENDPOINT: provider.oidcEndpoint })
  const output = await waitFor(started, /Press Ctrl-C to stop\./)
  t.match(output, `Protected by Microsoft Entra ID: client ID ${clientId}`)
  t.notMatch(output, /Bearer eyJ/, 'prints no tokens of its own')
  const base = /example API on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1] as string
  for (const path of ['/me', '/files', '/reports', '/admin']) t.match(output, `${base}${path}`)

  const token = provider.entra.client(clientId, 'v2').generate({ scp: 'Files.Read' })
  t.equal((await call(`${base}/files`, token)).status, 200)
  const anonymous = await call(`${base}/files`)
  t.equal(anonymous.status, 401)
  t.equal(anonymous.contentType, 'application/problem+json')
  await stop(t, started, 'SIGINT')
})

t.test('incomplete ENTRA_* settings are a usage error', async t => {
  const started = start(t, { PORT: '0', ENTRA_CLIENT_ID: '11111111-2222-4333-8444-555555555555' })
  const { code } = await started.exited
  t.equal(code, 2)
  t.match(started.errors(), /ENTRA_TENANT and ENTRA_OIDC_ENDPOINT/)
})
