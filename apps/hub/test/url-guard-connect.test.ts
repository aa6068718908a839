import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardedConnector, type LocalDoors } from '../src/access/url-guard.js';

// Alert webhooks are checked when they are added; a name can resolve elsewhere later (DNS rebinding). The connector
// that sends the deliveries checks the address it actually connects to. A resolver that maps a made-up name to
// 127.0.0.1 stands for a name that now points at this host; the receiver is a real local HTTP server.
const hits: string[] = [];
const receiver = createServer((req, res) => {
  hits.push(String(req.headers.host));
  res.end('ok');
});
let port = 0;
const resolve = async (host: string) => (host === 'rebind.example' ? ['127.0.0.1'] : ['203.0.113.7']);
const doors =
  (hubPorts: number[] = []): (() => LocalDoors) =>
  () => ({ hubPorts, workerBasePort: 1, workerPortRange: 0, hubHost: '127.0.0.1' });
const agents: Agent[] = [];

function agent(denyPrivate: boolean, hubPorts: number[] = []): Agent {
  const made = new Agent({
    connect: guardedConnector({ denyPrivate, doors: doors(hubPorts), timeoutMs: 2_000 }, resolve),
  });
  agents.push(made);
  return made;
}

async function post(dispatcher: Agent): Promise<number> {
  const res = await request(`http://rebind.example:${port}/hook`, { method: 'POST', body: '{}', dispatcher });
  await res.body.text();
  return res.statusCode;
}

beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as AddressInfo).port;
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()));
  receiver.close();
});

describe('guardedConnector (alert deliveries)', () => {
  it('connects to the address it resolved and checked, keeping the name in Host', async () => {
    hits.length = 0;
    expect(await post(agent(false))).toBe(200);
    expect(hits).toEqual([`rebind.example:${port}`]);
  });

  it('refuses a name that now resolves to a private address when private URLs are denied', async () => {
    hits.length = 0;
    await expect(post(agent(true))).rejects.toThrow(/private address 127\.0\.0\.1/);
    expect(hits).toEqual([]);
  });

  it("refuses a name that now reaches one of the hub's doors on this host", async () => {
    hits.length = 0;
    await expect(post(agent(false, [port]))).rejects.toThrow(/hub's own port/);
    expect(hits).toEqual([]);
  });
});
