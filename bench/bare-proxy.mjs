// The floor of a hop: a plain node:http server that passes each POST to one URL with undici and answers its
// body, nothing else (no auth, no validation, no logging). The calls bench probes it in front of the worker the
// way it probes the hub, so the hub's added latency can be read against what any HTTP hop costs on the machine.
// Usage: node bench/bare-proxy.mjs <port> <targetUrl> [header: value]
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, target, header] = process.argv.slice(2);
const url = new URL(target);
const pool = new Pool(url.origin, { connections: 256 });
const extra = header
  ? { [header.split(':')[0].trim().toLowerCase()]: header.slice(header.indexOf(':') + 1).trim() }
  : {};
const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  try {
    const answer = await pool.request({
      path: url.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...extra },
      body: Buffer.concat(chunks),
    });
    const body = await answer.body.text();
    res.writeHead(answer.statusCode, { 'content-type': 'application/json' });
    res.end(body);
  } catch (err) {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: String(err) }));
  }
});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
