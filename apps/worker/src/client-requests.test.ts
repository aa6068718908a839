import { createLogger } from '@mcp-hub/shared';
import { ProtocolError } from '@modelcontextprotocol/server';
import { describe, expect, it } from 'vitest';
import { type ClientChannel, ClientRequestRouter, missingCapability } from './client-requests.js';

const log = createLogger({ service: 'worker', level: 'silent' });

describe('missingCapability', () => {
  const cases: [string, Parameters<typeof missingCapability>, string | undefined][] = [
    ['sampling without the capability', ['sampling/createMessage', {}, {}], 'sampling'],
    ['sampling with it', ['sampling/createMessage', {}, { sampling: {} }], undefined],
    [
      'sampling with tools, client without sampling.tools',
      ['sampling/createMessage', { tools: [] }, { sampling: {} }],
      'sampling.tools',
    ],
    [
      'sampling with tools, client with them',
      ['sampling/createMessage', { tools: [] }, { sampling: { tools: {} } }],
      undefined,
    ],
    ['form elicitation, 2025-06 style empty capability', ['elicitation/create', {}, { elicitation: {} }], undefined],
    [
      'form elicitation, form declared',
      ['elicitation/create', { mode: 'form' }, { elicitation: { form: {} } }],
      undefined,
    ],
    [
      'form elicitation, only url declared',
      ['elicitation/create', {}, { elicitation: { url: {} } }],
      'elicitation.form',
    ],
    [
      'url elicitation, form only',
      ['elicitation/create', { mode: 'url' }, { elicitation: { form: {} } }],
      'elicitation.url',
    ],
    ['url elicitation, url declared', ['elicitation/create', { mode: 'url' }, { elicitation: { url: {} } }], undefined],
    ['elicitation, no capability', ['elicitation/create', {}, undefined], 'elicitation'],
    ['roots without', ['roots/list', undefined, { sampling: {} }], 'roots'],
    ['roots with', ['roots/list', undefined, { roots: {} }], undefined],
  ];
  it.each(cases)('%s', (_name, args, expected) => {
    expect(missingCapability(...args)).toBe(expected);
  });
});

/** A client that answers with its own name. */
function channel(owner: string, capabilities: Record<string, unknown> = { sampling: {}, roots: {} }): ClientChannel {
  return {
    owner,
    capabilities: () => capabilities,
    ask: async (method) => ({ answeredBy: owner, method }),
  };
}

const signal = new AbortController().signal;

describe('ClientRequestRouter', () => {
  it('sends a request to the owner of the only call in flight, its newest call', async () => {
    const router = new ClientRequestRouter(log);
    const older = channel('session-a');
    const newer = { ...channel('session-a'), ask: async () => ({ answeredBy: 'newest call of session-a' }) };
    router.enterCall(older);
    router.enterCall(newer);
    expect(await router.route('sampling/createMessage', {}, signal)).toEqual({
      answeredBy: 'newest call of session-a',
    });
  });

  it('refuses when calls of two owners are in flight (nothing says which one asks)', async () => {
    const router = new ClientRequestRouter(log);
    router.enterCall(channel('a'));
    const leaveB = router.enterCall(channel('b'));
    await expect(router.route('sampling/createMessage', {}, signal)).rejects.toThrow(/2 clients have calls in flight/);
    leaveB();
    expect(await router.route('sampling/createMessage', {}, signal)).toMatchObject({ answeredBy: 'a' });
  });

  it('outside any call, asks the only open session able to answer, else refuses', async () => {
    const router = new ClientRequestRouter(log);
    await expect(router.route('roots/list', undefined, signal)).rejects.toThrow(/no connected client/);
    router.openSession(channel('with-roots'));
    router.openSession(channel('without-roots', { sampling: {} }));
    expect(await router.route('roots/list', undefined, signal)).toMatchObject({ answeredBy: 'with-roots' });
    const close = router.openSession(channel('second-with-roots'));
    await expect(router.route('roots/list', undefined, signal)).rejects.toThrow(/2 connected clients could answer/);
    close();
    expect(await router.route('roots/list', undefined, signal)).toMatchObject({ answeredBy: 'with-roots' });
  });

  it('never asks a client without the capability: method not found, as that client would answer', async () => {
    const router = new ClientRequestRouter(log);
    let asked = false;
    const ask = async () => {
      asked = true;
      return {};
    };
    router.enterCall({ owner: 'plain', capabilities: () => ({}), ask });
    const error = await router.route('elicitation/create', {}, signal).catch((e: unknown) => e);
    expect(ProtocolError.isInstance(error) && error.code).toBe(-32_601);
    expect(asked).toBe(false);
  });

  it('tells who was asked (a URL elicitation’s completion notice goes to that session)', async () => {
    const routed: string[] = [];
    const router = new ClientRequestRouter(log, (method, params, owner) => {
      routed.push(`${method} ${String(params?.elicitationId)} ${owner}`);
    });
    router.enterCall(channel('session-x', { elicitation: { url: {} } }));
    await router.route('elicitation/create', { mode: 'url', elicitationId: 'e-1' }, signal);
    expect(routed).toEqual(['elicitation/create e-1 session-x']);
  });
});
