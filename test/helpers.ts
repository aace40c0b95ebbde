/** Kept so test files importing './helpers.js' keep working: the helpers live in ./helpers/. */
export * from './helpers/index.js'
/** Older name of `bearer`. */
export { bearer as bearerHeader } from './helpers/http.js'
