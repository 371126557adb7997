/**
 * Bench child: the two baselines for secret reads, on bare node:http (no framework, no storage,
 * no audit). Same route and the same JSON shape as Latchkey's GET /v1/vaults/:vault/secrets/:name/value.
 *
 *   ceiling  token check = HMAC-SHA256 of the bearer token compared in constant time with a stored
 *            hash; the value is AES-256-GCM decrypted from memory (key in memory).
 *   seed     the seed's documented scheme: for every read, derive the key with PBKDF2-SHA256,
 *            100,000 iterations (async, libuv pool) from a passphrase and the secret's own salt,
 *            then AES-256-GCM decrypt.
 *   floor    the ceiling plus the least the target's own definition asks of any implementation:
 *            the five security headers required on every response (short values) and a durable
 *            audit event per read, as a row in SQLite (WAL) with an HMAC chain, group-committed,
 *            answered only after an fdatasync of the WAL (on the libuv pool). No secondary index
 *            on the events, no stored tokens, no access check, no rate limit. Not a product.
 *
 * argv[2] = ceiling | seed | floor. Parent sends {type:'init', id, token, vault, secrets:[{name,value}], dir};
 * `dir` (floor) is where its database goes;
 * child answers {id, url, pid} once listening. {type:'elu', id} answers the event loop's busy
 * milliseconds since start.
 */
import { createCipheriv, createDecipheriv, createHmac, pbkdf2, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';

const pbkdf2Async = promisify(pbkdf2);
const mode = process.argv[2] === 'seed' || process.argv[2] === 'floor' ? process.argv[2] : 'ceiling';
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

/** floor: the headers SPEC and the access issue require on every response, with short values */
const REQUIRED_HEADERS = {
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'", 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer', 'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

/** floor: a hash-chained audit row per read in SQLite, durable (fdatasync of the WAL) before the answer; concurrent reads share a commit */
class FloorAudit {
  private pending: Array<{ vault: string; name: string; ip: string | null; done: (err?: unknown) => void }> = [];
  private scheduled = false;
  private unsynced: FloorAudit['pending'] = [];
  private syncing = false;
  private readonly key = randomBytes(32);
  private readonly append: (batch: FloorAudit['pending']) => void;

  private constructor(private readonly db: Database.Database, private readonly wal: FileHandle) {
    const head = db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1');
    const insert = db.prepare('INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)');
    const setHead = db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1');
    this.append = db.transaction((batch: FloorAudit['pending']) => {
      let { seq, hash } = head.get() as { seq: number; hash: string };
      const ts = new Date().toISOString();
      for (const b of batch) {
        const row = [++seq, randomUUID(), ts, 'user:owner', 'secret.read', b.vault, b.name, 'ok', b.ip, randomUUID(), '{"version":1}', hash];
        hash = createHmac('sha256', this.key).update(JSON.stringify(row)).digest('hex');
        insert.run(...row, hash);
      }
      setHead.run(seq, hash);
    });
  }

  static async open(dir: string): Promise<FloorAudit> {
    const db = new Database(join(dir, 'floor.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(`CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, ts TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
      vault TEXT, target TEXT, outcome TEXT NOT NULL, ip TEXT, request_id TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`);
    db.exec(`CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL); INSERT INTO audit_head VALUES (1, 0, '')`);
    return new FloorAudit(db, await open(join(dir, 'floor.db-wal'), 'r'));
  }

  record(vault: string, name: string, ip: string | null): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ vault, name, ip, done: (err) => (err ? reject(err) : resolve()) });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.commit());
      }
    });
  }

  /** Commits what is pending at once (also while an fsync runs); answers wait for an fsync that started after their commit. */
  private commit(): void {
    this.scheduled = false;
    const batch = this.pending.splice(0);
    try {
      this.append(batch);
    } catch (err) {
      for (const b of batch) b.done(err);
      return;
    }
    this.unsynced.push(...batch);
    if (!this.syncing) void this.sync();
  }

  private async sync(): Promise<void> {
    this.syncing = true;
    while (this.unsynced.length) {
      const covered = this.unsynced.splice(0);
      try {
        await this.wal.datasync();
        for (const b of covered) b.done();
      } catch (err) {
        for (const b of covered) b.done(err);
      }
    }
    this.syncing = false;
  }
}
let floorAudit: FloorAudit | null = null;

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
  if (floorAudit) {
    await floorAudit.record(vault, name, req.socket.remoteAddress ?? null);
    res.writeHead(200, { ...REQUIRED_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  } else res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
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
    if (mode === 'floor') floorAudit = await FloorAudit.open(msg.dir);
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
