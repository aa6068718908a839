import { request } from 'undici';

export interface ApiAnswer {
  status: number;
  json: Record<string, unknown>;
}

/**
 * A JSON client of a hub's HTTP API for tests: `api(method, path, body?)` with `token` as Bearer; a body is sent
 * as JSON (with its content type), none without one (bodyless routes refuse a JSON content type with no body).
 */
export function hubApi(base: () => string, token: string) {
  return async (method: string, path: string, body?: unknown, as: string = token): Promise<ApiAnswer> => {
    const res = await request(`${base()}${path}`, {
      method: method as 'POST',
      headers: {
        authorization: `Bearer ${as}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, json: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> };
  };
}
