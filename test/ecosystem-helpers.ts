/** Kept so test files importing './ecosystem-helpers.js' keep working: the helpers live in ./helpers/. */
export { API_ID, OTHER_API_ID, bearer, closing, decoratorOf, fakeEntra } from './helpers/index.js'
