/** Kept for test files written before the helpers moved: use ./helpers/build.js. */
export { ensureBuilt, ROOT } from './helpers/build.js'
