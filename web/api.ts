/** The page's side of `cmdqv serve`'s API (src/serve/api.ts): fetch with the server's error text. */

/** The server refused a request (its `{ error }` text). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

async function check(res: Response): Promise<Response> {
  if (res.ok) return res;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: string };
    if (body.error) message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(message, res.status);
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await check(await fetch(path))).json()) as T;
}

export async function postJson<T>(path: string, body: unknown = {}): Promise<T> {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await (await check(res)).json()) as T;
}

/** A GET whose response headers matter too. */
export async function getWithHeaders(path: string): Promise<{ body: unknown; headers: Headers }> {
  const res = await check(await fetch(path));
  return { body: await res.json(), headers: res.headers };
}
