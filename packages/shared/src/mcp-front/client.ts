// The parts of the MCP front that an upstream's client side uses, without the MCP server SDK: a worker loads its
// front (and that SDK) only when an MCP client first connects to it.
export {
  CLIENT_REQUEST_METHODS,
  type ClientChannel,
  type ClientRequestMethod,
  missingCapability,
} from './client-channel.js';
export { OrderedClient } from './ordered-client.js';
