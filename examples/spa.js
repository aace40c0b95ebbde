/**
 * Serves the example single-page app (examples/spa/) beside the example API, on the same origin:
 * its page, MSAL Browser's browser builds from node_modules (no bundler), and `config.json`, which
 * tells it the fake Entra's authority and discovery URL, its client ID and the scopes to ask for.
 */
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = fileURLToPath(new URL('spa/', import.meta.url))

/** MSAL Browser's package folder, or undefined when it is not installed (it is a devDependency). */
function msalBrowserFolder () {
  try {
    return dirname(createRequire(import.meta.url).resolve('@azure/msal-browser/package.json'))
  } catch {
    return undefined
  }
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.json': 'application/json; charset=utf-8' }

/**
 * The SPA's routes, to register with a prefix (e.g. `/spa`).
 *
 * @param {import('fastify').FastifyInstance} app
 * @param {{ clientId: string, authority: string, discovery: string, scopes: string[] }} options
 */
export async function spa (app, options) {
  const msal = msalBrowserFolder()
  if (msal === undefined) throw new Error('examples/spa.js: @azure/msal-browser is not installed (npm install)')
  const files = {
    'index.html': join(HERE, 'index.html'),
    'app.js': join(HERE, 'app.js'),
    'redirect.html': join(HERE, 'redirect.html'),
    // The UMD builds define the globals `msal` and `msalRedirectBridge`: plain <script> tags load them.
    'msal-browser.min.js': join(msal, 'lib', 'msal-browser.min.js'),
    'msal-redirect-bridge.min.js': join(msal, 'lib', 'redirect-bridge', 'msal-redirect-bridge.min.js')
  }
  const config = JSON.stringify({ clientId: options.clientId, authority: options.authority, discovery: options.discovery, scopes: options.scopes })
  // The page at /spa/ resolves its files relative to it: send /spa there.
  app.get('/', { prefixTrailingSlash: 'no-slash' }, async (request, reply) => reply.redirect(`${app.prefix}/`))
  app.get('/config.json', async (request, reply) => reply.type(TYPES['.json']).header('cache-control', 'no-store').send(config))
  for (const [name, path] of Object.entries(files)) {
    const body = await readFile(path)
    const route = name === 'index.html' ? '/' : `/${name}`
    // The redirect bridge receives the authorization code: no cache may keep it (MSAL's redirect-bridge guide).
    app.get(route, { prefixTrailingSlash: 'slash' }, async (request, reply) => reply.type(TYPES[name.slice(name.lastIndexOf('.'))]).header('cache-control', 'no-store').send(body))
  }
}
