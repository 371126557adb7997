/**
 * Bench child: the two baselines for secret reads, on bare node:http (no framework, no storage,
 * no audit). Same route and the same JSON shape as Latchkey's GET /v1/vaults/:vault/secrets/:name/value.
 *
 *   ceiling  token check = HMAC-SHA256 of the bearer token compared in constant time with a stored
 *            hash; the value is AES-256-GCM decrypted from memory (key in memory).
 *   seed     the seed's documented scheme: for every read, derive the key with PBKDF2-SHA256,
 *            100,000 iterations (async, libuv pool) from a passphrase and the secret's own salt,
 *            then AES-256-GCM decrypt.
 *
 * argv[2] = ceiling | seed. Parent sends {type:'init', id, token, vault, secrets:[{name,value}]};
 * child answers {id, url, pid} once listening. {type:'elu', id} answers the event loop's busy
 * milliseconds since start.
 */
import { createCipheriv, createDecipheriv, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);
const mode = process.argv[2] === 'seed' ? 'seed' : 'ceiling';
const ITERATIONS = 100_000;
const ROUTE = /^\/v1\/vaults\/([^/?]+)\/secrets\/([^/?]+)\/value(?:\?.*)?$/;
const BEARER = /^Bearer\s+(\S+)\s*$/i;

interface Sealed {
  salt: Buffer;
  iv: Buffer;
  ct: Buffer;
  tag: Buffer;
}

const tokenKey = randomBytes(32);
let tokenHash = Buffer.alloc(32);
const memKey = randomBytes(32);
const passphrase = randomBytes(24).toString('base64url');
const secrets = new Map<string, Sealed>();

const hmac = (t: string) => createHmac('sha256', tokenKey).update(t).digest();
const aadFor = (vault: string, name: string) => Buffer.from(`${vault}\0${name}\0`, 'utf8');

function encrypt(key: Buffer, plain: string, aad: Buffer, salt: Buffer): Sealed {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return { salt, iv, ct, tag: c.getAuthTag() };
}

function decrypt(key: Buffer, s: Sealed, aad: Buffer): string {
  const d = createDecipheriv('aes-256-gcm', key, s.iv);
  d.setAAD(aad);
  d.setAuthTag(s.tag);
  return Buffer.concat([d.update(s.ct), d.final()]).toString('utf8');
}

function problem(res: ServerResponse, status: number, code: string) {
  res.writeHead(status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ status, code }));
}

async function handle(req: IncomingMessage, res: ServerResponse) {
  const m = req.method === 'GET' ? ROUTE.exec(req.url ?? '') : null;
  if (!m) return problem(res, 404, 'route_not_found');
  const b = BEARER.exec(req.headers.authorization ?? '');
  if (!b || !timingSafeEqual(hmac(b[1]!), tokenHash)) return problem(res, 401, 'invalid_token');
  const vault = decodeURIComponent(m[1]!);
  const name = decodeURIComponent(m[2]!);
  const s = secrets.get(`${vault}/${name}`);
  if (!s) return problem(res, 404, 'secret_not_found');
  const key = mode === 'seed' ? ((await pbkdf2Async(passphrase, s.salt, ITERATIONS, 32, 'sha256')) as Buffer) : memKey;
  const value = decrypt(key, s, aadFor(vault, name));
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ name, vault, version: 1, value }));
}

process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.on('message', async (msg: any) => {
  if (msg?.type === 'elu') {
    process.send?.({ id: msg.id, ok: true, activeMs: performance.eventLoopUtilization().active });
    return;
  }
  if (msg?.type !== 'init') return;
  try {
    tokenHash = hmac(msg.token);
    const vault: string = msg.vault ?? 'default';
    // seed: every secret gets its own salt, and its key is derived from the passphrase with it
    await Promise.all((msg.secrets as Array<{ name: string; value: string }>).map(async ({ name, value }) => {
      const salt = randomBytes(16);
      const key = mode === 'seed' ? ((await pbkdf2Async(passphrase, salt, ITERATIONS, 32, 'sha256')) as Buffer) : memKey;
      secrets.set(`${vault}/${name}`, encrypt(key, value, aadFor(vault, name), salt));
    }));
    const server = createServer((req, res) => {
      handle(req, res).catch(() => problem(res, 500, 'internal'));
    });
    server.keepAliveTimeout = 60_000;
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      process.send?.({ id: msg.id, url: `http://127.0.0.1:${port}`, pid: process.pid, mode });
    });
  } catch (err) {
    process.send?.({ id: msg.id, error: String(err) });
  }
});
