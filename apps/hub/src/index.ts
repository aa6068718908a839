export { buildHub, type HubDeps } from './app.js';
