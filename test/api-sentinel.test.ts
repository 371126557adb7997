/**
 * Secret values leak nowhere. A real server runs at log level `trace` with every log line
 * captured and an audit JSON-lines file; sentinel values go through every path a value can take
 * (create, preset fields, PUT versions, rollback, rotate, rotate-all, reads, a proposal's values,
 * vending under a read grant) and every path a value can be refused on (cas mismatch, validation
 * failures, malformed JSON, wrong content type, as a bearer token, as a cookie, as a password).
 * Then no sentinel may appear in the log, in any error body or non-value response, in any audit
 * row (API and raw SQL), in the audit file, or in the raw database: for SQLite the bytes of the
 * .db, -wal and -shm files, searched as UTF-8, UTF-16, base64 and hex; for PostgreSQL every row
 * of every table as JSON.
 *
 * Positive controls prove each place is actually searched: a non-secret marker (a description)
 * is found in the database, secret names are found in the log, audit rows are found in the file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';

const MASTER = '5e'.repeat(32);

/** A fresh sentinel core: 24 upper-case hex characters behind a fixed tag (fits every preset format used here). */
const core = () => 'SNTL' + randomBytes(12).toString('hex').toUpperCase();

/** Every way the sentinel could sit in bytes: UTF-8, UTF-16 (LE/BE), base64 (every alignment, std + url), hex. */
function encodingsOf(s: string): Array<{ how: string; bytes: Buffer }> {
  const out: Array<{ how: string; bytes: Buffer }> = [];
  const utf8 = Buffer.from(s, 'utf8');
  out.push({ how: 'utf8', bytes: utf8 });
  out.push({ how: 'utf16le', bytes: Buffer.from(s, 'utf16le') });
  const be = Buffer.from(s, 'utf16le');
  be.swap16();
  out.push({ how: 'utf16be', bytes: be });
  for (let shift = 0; shift < 3; shift++) {
    // base64 of the sentinel at any offset in a longer buffer: drop the characters that depend on neighbours
    const b64 = Buffer.concat([Buffer.alloc(shift), utf8]).toString('base64');
    // character k covers bits [6k, 6k+6): it depends on the sentinel alone when they lie inside its bytes
    const stable = b64.slice(Math.ceil((shift * 4) / 3), Math.floor(((shift + utf8.length) * 4) / 3));
    out.push({ how: `base64+${shift}`, bytes: Buffer.from(stable, 'latin1') });
    out.push({ how: `base64url+${shift}`, bytes: Buffer.from(stable.replace(/\+/g, '-').replace(/\//g, '_'), 'latin1') });
  }
  out.push({ how: 'hex', bytes: Buffer.from(utf8.toString('hex'), 'latin1') });
  out.push({ how: 'HEX', bytes: Buffer.from(utf8.toString('hex').toUpperCase(), 'latin1') });
  return out;
}

/** Which encodings of which sentinels occur in `hay` (empty = clean). */
function findIn(hay: Buffer, sentinels: string[]): string[] {
  const hits: string[] = [];
  for (const s of sentinels) for (const e of encodingsOf(s)) if (hay.includes(e.bytes)) hits.push(`${s} as ${e.how}`);
  return hits;
}

describe('sentinel search (the detector itself)', () => {
  it('finds a sentinel in every encoding at any offset, and nothing in clean data', () => {
    const s = core();
    for (let pad = 0; pad < 4; pad++) {
      const prefix = 'x'.repeat(pad);
      const plain = Buffer.from(`${prefix}${s}tail`, 'utf8');
      expect(findIn(plain, [s])).toContain(`${s} as utf8`);
      expect(findIn(Buffer.from(`${prefix}${s}tail`, 'utf16le'), [s])).toContain(`${s} as utf16le`);
      expect(findIn(Buffer.from(plain.toString('base64'), 'latin1'), [s]).some((h) => h.includes('base64+'))).toBe(true);
      expect(findIn(Buffer.from(plain.toString('base64url'), 'latin1'), [s]).some((h) => h.includes('base64url+'))).toBe(true);
      expect(findIn(Buffer.from(plain.toString('hex'), 'latin1'), [s])).toContain(`${s} as hex`);
      expect(findIn(Buffer.from(`\\x${plain.toString('hex')}`, 'latin1'), [s])).toContain(`${s} as hex`);
    }
    expect(findIn(randomBytes(1 << 16), [s])).toEqual([]);
  });
});

describeBackends('no secret value leaks anywhere', (ctx) => {
  let server: RunningServer;
  let owner: string;
  let agentToken: string;
  let log = '';
  let auditFile: string;
  const errorBodies: string[] = [];
  const otherBodies: string[] = [];

  // every value that must never be seen again (the cores; a value may wrap its core, e.g. sk-<core>)
  const S = {
    plain: core(), created: core(), v2: core(), v3: core(), openai: core(), awsId: core().slice(0, 16), awsSecret: core() + core().slice(0, 12),
    casMismatch: core(), badName: core(), unknownField: core(), badPreset: core(), tooLong: core(), malformed: core(), plainText: core(),
    bearer: core(), bearerPat: core(), cookie: core(), password: core(), wrongPassword: core(), proposal: core(), approved: core(),
    rotated: core(), category: core(), asKey: core(), asPresetKey: core(), asQueryKey: core(), asLongKey: core(),
  };
  const sentinels = () => Object.values(S);
  const DESC = 'DESCMARK' + randomBytes(8).toString('hex');

  async function call(method: string, path: string, opts: { body?: unknown; raw?: string; type?: string; token?: string | null; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...opts.headers };
    const tok = opts.token === undefined ? owner : opts.token;
    if (tok) headers.authorization = `Bearer ${tok}`;
    const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    if (body !== undefined) headers['content-type'] = opts.type ?? 'application/json';
    const res = await fetch(server.url + path, { method, headers, body });
    const text = await res.text();
    // what the server sent back (not the request line: some paths carry a sentinel on purpose)
    const shown = `${res.status} ${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${text}`;
    if (res.status >= 400) errorBodies.push(shown);
    else if (!path.split('?')[0]!.endsWith('/value') && !path.startsWith('/v1/agent/secrets/')) otherBodies.push(shown);
    let json: any = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* asserted by callers */ }
    return { status: res.status, json, text, headers: res.headers };
  }

  beforeAll(async () => {
    auditFile = join(ctx.home, 'audit.jsonl');
    const logStream = new Writable({ write(chunk, _enc, cb) { log += chunk.toString('utf8'); cb(); } });
    server = await startServer({
      home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'trace', logStream, auditFile,
      env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT: 'off' },
    });
    owner = server.initialized!.ownerToken;
  });

  afterAll(async () => {
    await server?.close();
  });

  it('stores, updates, rolls back, rotates and reads sentinel values', async () => {
    expect((await call('PUT', '/v1/vaults/default/secrets/PLAIN_KEY', { body: { value: S.plain, description: DESC } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/secrets', { body: { name: 'CREATED_KEY', value: `prefix-${S.created}-suffix`, category: 'api_key', tags: ['prod'] } })).status).toBe(201);
    // preset fields
    expect((await call('POST', '/v1/vaults/default/secrets', { body: { preset: 'openai', fields: { access_token: `sk-${S.openai}` } } })).status).toBe(201);
    const aws = await call('POST', '/v1/vaults/default/secrets', { body: { preset: 'aws', fields: { access_key_id: `AKIA${S.awsId}`, secret_access_key: S.awsSecret, region: 'eu-west-1' } } });
    expect(aws.status, aws.text).toBe(201);
    // versions, rollback, rotate, rotate-all
    expect((await call('PUT', '/v1/vaults/default/secrets/PLAIN_KEY', { body: { value: S.v2, cas: 1 } })).status).toBe(200);
    expect((await call('PUT', '/v1/vaults/default/secrets/PLAIN_KEY', { body: { value: S.v3 } })).status).toBe(200);
    expect((await call('POST', '/v1/vaults/default/secrets/PLAIN_KEY/rollback', { body: { version: 1 } })).json).toMatchObject({ version: 4 });
    expect((await call('PUT', '/v1/vaults/default/secrets/ROTATED_KEY', { body: { value: S.rotated } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/secrets/ROTATED_KEY/rotate')).status).toBe(200);
    expect((await call('POST', '/v1/keys/rotate')).status).toBe(200);
    expect((await call('POST', '/v1/vaults/default/rotate-all', { body: {} })).json).toMatchObject({ failed: 0, done: true });
    expect((await call('POST', '/v1/keys/rewrap', { body: {} })).status).toBe(200);
    // reads: current and pinned versions give the values back
    const read = async (name: string, q = '') => (await call('GET', `/v1/vaults/default/secrets/${encodeURIComponent(name)}/value${q}`)).json.value;
    expect(await read('PLAIN_KEY')).toBe(S.plain);
    expect(await read('PLAIN_KEY', '?version=2')).toBe(S.v2);
    expect(await read('PLAIN_KEY', '?version=3')).toBe(S.v3);
    expect(await read('CREATED_KEY')).toBe(`prefix-${S.created}-suffix`);
    expect(await read('skill:openai:access_token')).toBe(`sk-${S.openai}`);
    expect(await read('skill:aws:secret_access_key')).toBe(S.awsSecret);
    expect(await read('ROTATED_KEY')).toBe(S.rotated);
    expect((await call('GET', '/v1/vaults/default/secrets/PLAIN_KEY')).json.versions).toHaveLength(4);
  });

  it('refused requests carrying sentinels: cas mismatch, validation, malformed JSON, wrong content type', async () => {
    const bad = async (status: number, method: string, path: string, opts: Parameters<typeof call>[2]) => {
      const r = await call(method, path, opts);
      expect(r.status, r.text).toBe(status);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      return r;
    };
    await bad(409, 'PUT', '/v1/vaults/default/secrets/PLAIN_KEY', { body: { value: S.casMismatch, cas: 1 } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { name: 'not valid', value: S.badName } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { name: 'GOOD_NAME', value: S.unknownField, colour: 'red' } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { name: 'GOOD_NAME', value: 'v', category: S.category } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { preset: 'openai', fields: { access_token: `not-openai-${S.badPreset}` } } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { preset: 'aws', fields: { access_key_id: `AKIA${S.awsId}`, secret_access_key: `${S.badPreset}!` } } });
    await bad(400, 'PUT', '/v1/vaults/default/secrets/GOOD_NAME', { body: { value: S.tooLong + 'x'.repeat(70_000) } });
    await bad(400, 'PUT', '/v1/vaults/default/secrets/GOOD_NAME', { raw: `{"value": "${S.malformed}", `, type: 'application/json' });
    await bad(400, 'PUT', '/v1/vaults/default/secrets/GOOD_NAME', { raw: `{"value": "${S.malformed}" "cas": 1}`, type: 'application/json' });
    await bad(415, 'PUT', '/v1/vaults/default/secrets/GOOD_NAME', { raw: `value=${S.plainText}`, type: 'text/plain' });
    await bad(404, 'PUT', '/v1/vaults/no-such-vault/secrets/GOOD_NAME', { body: { value: S.casMismatch } });
    // a value sent where a key goes is not echoed back as the field at fault
    await bad(400, 'PUT', '/v1/vaults/default/secrets/GOOD_NAME', { body: { value: 'v', [`sk-${S.asKey}`]: 'x' } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { preset: 'openai', fields: { [`sk-${S.asPresetKey}`]: 'x' } } });
    await bad(400, 'POST', '/v1/vaults/default/secrets', { body: { preset: 'openai', fields: { [`k${S.asLongKey}`.repeat(3)]: 'x' } } });
    await bad(400, 'GET', `/v1/vaults/default/secrets?sk-${S.asQueryKey}=1`, {});
    await bad(413, 'PUT', '/v1/vaults/default/secrets/GOOD_NAME', { body: { value: S.tooLong + 'y'.repeat(1_100_000) } });
  });

  it('sentinels as credentials: bearer tokens, a cookie, passwords', async () => {
    expect((await call('GET', '/v1/vaults', { token: S.bearer })).status).toBe(401);
    expect((await call('GET', '/v1/vaults', { token: `lk_pat_${S.bearerPat}` })).status).toBe(401);
    expect((await call('GET', '/v1/vaults', { token: null, headers: { cookie: `lk_session=${S.cookie}` } })).status).toBe(401);
    expect((await call('GET', '/v1/vaults', { token: null, headers: { authorization: `Basic ${Buffer.from(`u:${S.bearer}`).toString('base64')}` } })).status).toBe(401);
    // the owner sets a sentinel password, a wrong (sentinel) password fails, the right one logs in
    const me = await call('PATCH', '/v1/auth/me', { body: { email: 'owner@example.com', password: `pw-${S.password}` } });
    expect(me.status, me.text).toBe(200);
    expect((await call('POST', '/v1/auth/login', { token: null, body: { email: 'owner@example.com', password: `pw-${S.wrongPassword}` } })).status).toBe(401);
    expect((await call('POST', '/v1/auth/login', { token: null, body: { email: 'owner@example.com', password: `pw-${S.password}` } })).status).toBe(200);
    expect((await call('POST', '/v1/auth/login', { token: null, raw: `{"email":"owner@example.com","password":"${S.wrongPassword}`, type: 'application/json' })).status).toBe(400);
  });

  it('an agent proposes a value, a person approves with another; the agent vends one under a read grant', async () => {
    const a = await call('POST', '/v1/agents', { body: { name: 'sentinel-bot', vaults: ['default'] } });
    expect(a.status, a.text).toBe(201);
    agentToken = a.json.token;
    const p = await call('POST', '/v1/vaults/default/proposals', {
      token: agentToken,
      body: { credentials: [{ action: 'set', key: 'PROPOSED_KEY', value: S.proposal }, { action: 'set', key: 'APPROVED_KEY' }] },
    });
    expect(p.status, p.text).toBe(201);
    const ok = await call('POST', `/v1/vaults/default/proposals/${p.json.id}/approve`, { body: { credentials: { APPROVED_KEY: S.approved } } });
    expect(ok.status, ok.text).toBe(200);
    const g = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'sentinel-bot', secret: 'PROPOSED_KEY', mode: 'read' } });
    expect(g.status, g.text).toBe(201);
    const vend = await call('GET', '/v1/agent/secrets/PROPOSED_KEY?vault=default', { token: agentToken });
    expect(vend.status, vend.text).toBe(200);
    expect(vend.text).toContain(S.proposal);
    expect((await call('GET', '/v1/vaults/default/secrets/APPROVED_KEY/value')).json.value).toBe(S.approved);
    // denied: no grant for this one
    expect((await call('GET', '/v1/agent/secrets/APPROVED_KEY?vault=default', { token: agentToken })).status).toBe(403);
  });

  it('no sentinel in the log (level trace), though the log recorded the requests', () => {
    expect(log.length).toBeGreaterThan(1000);
    expect(log).toContain('/v1/vaults/default/secrets/PLAIN_KEY');
    expect(findIn(Buffer.from(log, 'utf8'), sentinels())).toEqual([]);
  });

  it('no sentinel in any error body or header, nor in any response other than a value read', () => {
    expect(errorBodies.length).toBeGreaterThan(15);
    expect(findIn(Buffer.from(errorBodies.join('\n'), 'utf8'), sentinels())).toEqual([]);
    expect(otherBodies.join('\n')).toContain(DESC);
    const leaks = otherBodies.filter((b) => findIn(Buffer.from(b, 'utf8'), sentinels()).length).map((b) => b.slice(0, 600));
    expect(leaks).toEqual([]);
  });

  it('no sentinel in the audit log: API, raw SQL, the JSON-lines file', async () => {
    const items: unknown[] = [];
    let cursor: string | null = null;
    do {
      const r = await call('GET', `/v1/audit?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      items.push(...r.json.items);
      cursor = r.json.next_cursor;
    } while (cursor);
    const apiText = JSON.stringify(items);
    for (const action of ['secret.create', 'secret.update', 'secret.read', 'secret.rollback', 'secret.rotate', 'vault.rotate_all', 'auth.failure', 'auth.login', 'proposal.approve', 'secret.vend']) {
      expect(apiText, action).toContain(`"${action}"`);
    }
    expect(findIn(Buffer.from(apiText, 'utf8'), sentinels())).toEqual([]);
    // searching the audit log by a sentinel finds nothing
    expect((await call('GET', `/v1/audit?q=${S.plain}`)).json.items).toEqual([]);

    const rows = await rawAuditRows();
    expect(rows.length).toBe(items.length);
    expect(findIn(Buffer.from(rows.join('\n'), 'utf8'), sentinels())).toEqual([]);

    expect(existsSync(auditFile)).toBe(true);
    const file = readFileSync(auditFile);
    expect(file.toString('utf8')).toContain('"secret.rollback"');
    expect(findIn(file, sentinels())).toEqual([]);
    expect((await call('GET', '/v1/audit/verify')).json.ok).toBe(true);
  });

  async function rawAuditRows(): Promise<string[]> {
    if (ctx.backend === 'sqlite') {
      const Database = (await import('better-sqlite3')).default;
      const conn = new Database(ctx.sqlitePath!, { readonly: true });
      try {
        return (conn.prepare('select * from audit_events').all() as Array<Record<string, unknown>>).map((r) => JSON.stringify(r));
      } finally {
        conn.close();
      }
    }
    const c = new pg.Client({ connectionString: ctx.databaseUrl });
    await c.connect();
    try {
      return (await c.query<{ j: string }>('select row_to_json(t)::text as j from audit_events t')).rows.map((r) => r.j);
    } finally {
      await c.end();
    }
  }

  it('no sentinel in the raw database', async () => {
    if (ctx.backend === 'sqlite') {
      const scan = (when: string) => {
        const files = ['', '-wal', '-shm'].map((s) => ctx.sqlitePath! + s).filter((f) => existsSync(f));
        expect(files[0]).toBe(ctx.sqlitePath);
        const all = Buffer.concat(files.map((f) => readFileSync(f)));
        // control: the database holds the description we stored (as UTF-8 text)
        expect(all.includes(Buffer.from(DESC)), `${when}: the description marker`).toBe(true);
        expect(findIn(all, sentinels()), when).toEqual([]);
        return files;
      };
      const live = scan('while running');
      expect(live.some((f) => f.endsWith('-wal'))).toBe(true);
      await server.close();
      scan('after close (checkpointed)');
      return;
    }
    const c = new pg.Client({ connectionString: ctx.databaseUrl });
    await c.connect();
    try {
      const tables = (await c.query<{ t: string }>("select table_name as t from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1")).rows.map((r) => r.t);
      expect(tables).toEqual(expect.arrayContaining(['secrets', 'secret_versions', 'audit_events', 'tokens', 'users', 'proposals', 'meta', 'keys']));
      let dump = '';
      for (const t of tables) dump += (await c.query<{ j: string }>(`select row_to_json(x)::text as j from "${t}" x`)).rows.map((r) => r.j).join('\n') + '\n';
      expect(dump).toContain(DESC);
      // bytea columns come out as \x<hex>: the hex encodings are searched too
      expect(dump).toMatch(/\\\\x[0-9a-f]{64}/);
      expect(findIn(Buffer.from(dump, 'utf8'), sentinels())).toEqual([]);
    } finally {
      await c.end();
    }
    await server.close();
  });
});
