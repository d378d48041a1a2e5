// One HTTP request to a `cmdqv serve` under test, answered as status, headers and body text.
import { request, type IncomingMessage } from 'node:http';

export interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
}

/**
 * `method path` on the server at `base`. A string or Buffer body goes as it is, anything else as
 * JSON; a POST says `content-type: application/json` unless `headers` are given.
 */
export function httpCall(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = method === 'POST' ? { 'content-type': 'application/json' } : {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, base), { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
  });
}
