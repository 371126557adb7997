/**
 * Bad input over HTTP, through the real server (startServer) on both backends: every malformed,
 * mistyped, missing, unknown, over-long or conflicting request gets the right 4xx as
 * application/problem+json with a stable `code` and the `field` at fault, never a 500, and a
 * refused write changes nothing (a raw dump of every table, the secret list and the audit count
 * are the same before and after).
 *
 * Limits relied on (src/core/names.ts LIMITS, imported below so this file follows them):
 *   - secret name: at most LIMITS.secretName (128) characters, SECRET_NAME_RE: UPPER_SNAKE_CASE
 *     (`STRIPE_KEY`) or `skill:<platform>:<key>` with lower-case parts (`[a-z0-9][a-z0-9_-]*` and
 *     `[a-z0-9][a-z0-9_]*`);
 *   - vault name: at most LIMITS.vaultName (63) characters, lower case, digits, `-`, `_`;
 *   - value: a non-empty string of at most LIMITS.valueBytes (65,536) bytes of UTF-8 (the API
 *     schema also caps it at 65,536 characters);
 *   - description at most LIMITS.description (1,024) characters; at most LIMITS.tags (32) tags of
 *     at most LIMITS.tagLength (64) characters `[A-Za-z0-9_.:-]`; a fallback chain of at most
 *     LIMITS.fallbackDepth (8) vaults; a list page of at most LIMITS.listPage (1,000);
 *   - request body: 1 MiB (Fastify bodyLimit in src/server/app.ts; proposals allow 4 MiB);
 *   - path segments: 512 characters (routerOptions.maxParamLength in src/server/app.ts), above
 *     that 414 `uri_too_long`.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LIMITS } from '../src/core/names.js';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends, type BackendContext } from './helpers/backends.js';

const MASTER = '3c'.repeat(32);

interface Res { status: number; type: string; allow: string | null; text: string; json: any }

/** A dump of every table, rows as JSON text, sorted: equal dumps mean nothing was written. */
async function openDump(ctx: BackendContext): Promise<{ dump(): Promise<Record<string, string[]>>; close(): Promise<void> }> {
  if (ctx.backend === 'sqlite') {
    const Database = (await import('better-sqlite3')).default;
    const conn = new Database(ctx.sqlitePath!, { readonly: true });
    conn.pragma('busy_timeout = 5000');
    return {
      async dump() {
        const out: Record<string, string[]> = {};
        const tables = conn.prepare("select name from sqlite_master where type = 'table' order by name").all() as Array<{ name: string }>;
        for (const { name } of tables) {
          const rows = conn.prepare(`select * from "${name}"`).all() as Array<Record<string, unknown>>;
          out[name] = rows.map((r) => JSON.stringify(r, (_k, v) => (Buffer.isBuffer(v) ? v.toString('hex') : v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v))).sort();
        }
        return out;
      },
      async close() { conn.close(); },
    };
  }
  const client = new pg.Client({ connectionString: ctx.databaseUrl });
  client.on('error', () => {});
  await client.connect();
  return {
    async dump() {
      const out: Record<string, string[]> = {};
      const tables = (await client.query<{ t: string }>("select table_name as t from information_schema.tables where table_schema = 'public' order by 1")).rows;
      for (const { t } of tables) out[t] = (await client.query<{ j: string }>(`select row_to_json(x)::text as j from "${t}" x`)).rows.map((r) => r.j).sort();
      return out;
    },
    async close() { await client.end().catch(() => {}); },
  };
}

describeBackends('API bad input', (ctx) => {
  let server: RunningServer;
  let token: string;
  let db: Awaited<ReturnType<typeof openDump>>;
  const seen500: string[] = [];

  async function call(method: string, path: string, opts: { body?: unknown; raw?: string | Uint8Array; type?: string | null; token?: string | null } = {}): Promise<Res> {
    const headers: Record<string, string> = {};
    const tok = opts.token === undefined ? token : opts.token;
    if (tok) headers.authorization = `Bearer ${tok}`;
    let body: string | Uint8Array | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) body = JSON.stringify(opts.body);
    const type = opts.type === undefined ? (body !== undefined ? 'application/json' : null) : opts.type;
    if (type) headers['content-type'] = type;
    const res = await fetch(server.url + path, { method, headers, body });
    const text = await res.text();
    let json: any = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON: asserted by the caller */ }
    if (res.status >= 500) seen500.push(`${method} ${path} -> ${res.status} ${text.slice(0, 200)}`);
    return { status: res.status, type: res.headers.get('content-type') ?? '', allow: res.headers.get('allow'), text, json };
  }

  /** The refusal has the status, the problem+json shape, the stable code and (when given) the field. */
  function expectProblem(r: Res, status: number, code: string, field?: string | null, what = '') {
    const ctxt = `${what}: ${r.status} ${r.text.slice(0, 300)}`;
    expect(r.status, ctxt).toBe(status);
    expect(r.type, ctxt).toMatch(/^application\/problem\+json/);
    expect(r.json, ctxt).toMatchObject({ status, code, type: expect.stringContaining(code), title: expect.any(String), detail: expect.any(String), request_id: expect.any(String) });
    if (field === null) expect(r.json.field, ctxt).toBeUndefined();
    else if (field !== undefined) expect(r.json.field, ctxt).toBe(field);
  }

  /** What a client can see change: the secret list with versions, and the audit count. */
  async function apiState() {
    const names: string[] = [];
    for (const vault of ['default', 'team']) {
      let cursor: string | null = null;
      do {
        const r = await call('GET', `/v1/vaults/${vault}/secrets?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
        expect(r.status).toBe(200);
        for (const s of r.json.items) names.push(`${vault}/${s.name}@${s.version}/${s.category}/${s.description}/${s.tags.join(',')}`);
        cursor = r.json.next_cursor;
      } while (cursor);
    }
    const status = await call('GET', '/v1/status');
    const vaults = await call('GET', '/v1/vaults');
    return { names, audit: status.json.audit, vaults: vaults.json.items.map((v: { name: string; fallback: string[]; description: string | null; passthrough: boolean }) => `${v.name}:${v.fallback.join('>')}:${v.description}:${v.passthrough}`).sort() };
  }

  /**
   * Sends a request that must be refused and proves it wrote nothing: every table's raw rows and
   * what the API shows are identical before and after.
   */
  async function refused(status: number, code: string, field: string | null | undefined, method: string, path: string, opts: Parameters<typeof call>[2] = {}): Promise<Res> {
    const before = await db.dump();
    const r = await call(method, path, opts);
    expectProblem(r, status, code, field, `${method} ${path}`);
    const after = await db.dump();
    expect(after, `${method} ${path} changed the database`).toEqual(before);
    return r;
  }

  beforeAll(async () => {
    server = await startServer({
      home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent',
      env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT: 'off' },
    });
    token = server.initialized!.ownerToken;
    db = await openDump(ctx);
    expect((await call('POST', '/v1/vaults', { body: { name: 'team' } })).status).toBe(201);
    expect((await call('PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'existing-v1' } })).status).toBe(201);
    expect((await call('PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'existing-v2', description: 'kept', tags: ['a'] } })).status).toBe(200);
    expect((await call('PUT', '/v1/vaults/default/secrets/skill:aws:region', { body: { value: 'us-east-1' } })).status).toBe(201);
  });

  afterAll(async () => {
    await db?.close();
    await server?.close();
  });

  it('health and status: unknown query parameters, unknown routes and methods', async () => {
    expect((await call('GET', '/v1/health', { token: null })).status).toBe(200);
    await refused(400, 'validation_failed', 'verbose', 'GET', '/v1/status?verbose=1');
    await refused(404, 'route_not_found', null, 'GET', '/v1/nothing-here');
    // a known path with another method: 405 naming the methods it has (Allow), not a 404
    expect((await refused(405, 'method_not_allowed', null, 'POST', '/v1/health', { body: {} })).allow).toBe('GET, HEAD');
    expect((await refused(405, 'method_not_allowed', null, 'PUT', '/v1/vaults/default/rotate-all', { body: {} })).allow).toBe('POST');
    expect((await refused(405, 'method_not_allowed', null, 'PATCH', '/v1/vaults/default/secrets/EXISTING', { body: {} })).allow).toBe('DELETE, GET, HEAD, PUT');
    expect((await refused(404, 'route_not_found', null, 'DELETE', '/v1/vaults/default/secrets/EXISTING/nothing')).allow).toBeNull();
    // without a token: a path that needs one is 401 whatever the method (no Allow: nothing about it
    // is told), a public one (health, the CA) is told its methods
    for (const [method, path] of [['POST', '/v1/vaults/default/rotate-all'], ['DELETE', '/v1/status'], ['PUT', '/v1/nothing-here']] as const) {
      const r = await call(method, path, { token: null });
      expect([r.status, r.allow], `${method} ${path}`).toEqual([401, null]);
    }
    expect(await call('POST', '/v1/health', { token: null })).toMatchObject({ status: 405, allow: 'GET, HEAD', json: { code: 'method_not_allowed' } });
    expect(await call('DELETE', '/v1/ca.pem', { token: null })).toMatchObject({ status: 405, allow: 'GET, HEAD' });
  });

  it('body syntax: malformed JSON, wrong content types, reserved keys, deep nesting, over the body limit', async () => {
    const before = await apiState();
    await refused(400, 'malformed_json', 'body', 'POST', '/v1/vaults', { raw: '{"name": "x1"', type: 'application/json' });
    await refused(400, 'malformed_json', 'body', 'POST', '/v1/vaults', { raw: "{'name': 'x1'}", type: 'application/json' });
    await refused(400, 'malformed_json', 'body', 'POST', '/v1/vaults', { raw: '\uFEFF{"name":"x1"}', type: 'application/json' });
    // deeply nested JSON parses (V8's parser is not recursive) and is refused by validation, not by a stack overflow
    await refused(400, 'validation_failed', 'value', 'POST', '/v1/vaults/default/secrets', { raw: '{"name":"DEEP","value":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}', type: 'application/json' });
    await refused(400, 'validation_failed', 'tags[0]', 'POST', '/v1/vaults/default/secrets', { raw: '{"name":"DEEP","value":"v","tags":[' + '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000) + ']}', type: 'application/json' });
    await refused(400, 'malformed_json', 'body', 'PUT', '/v1/vaults/default/secrets/EXISTING', { raw: '{"value":"x","__proto__":{"admin":true}}', type: 'application/json' });
    await refused(400, 'malformed_json', 'body', 'POST', '/v1/vaults/default/secrets', { raw: '{"name":"P_KEY","value":"x","constructor":{"prototype":{}}}', type: 'application/json' });
    await refused(400, 'malformed_json', 'body', 'POST', '/v1/keys/rotate', { raw: '{nope', type: 'application/json' });
    await refused(415, 'unsupported_media_type', 'content-type', 'POST', '/v1/vaults', { raw: '{"name":"x1"}', type: 'text/plain' });
    await refused(415, 'unsupported_media_type', 'content-type', 'POST', '/v1/vaults', { raw: 'name=x1', type: 'application/x-www-form-urlencoded' });
    await refused(415, 'unsupported_media_type', 'content-type', 'PUT', '/v1/vaults/default/secrets/EXISTING', { raw: '{"value":"x"}', type: 'application/xml' });
    await refused(415, 'unsupported_media_type', 'content-type', 'POST', '/v1/vaults', { raw: new TextEncoder().encode('{"name":"x1"}'), type: null });
    // a body that is not an object, or none at all where one is required
    await refused(400, 'validation_failed', 'body', 'POST', '/v1/vaults', { raw: '[]', type: 'application/json' });
    await refused(400, 'validation_failed', 'body', 'POST', '/v1/vaults', { raw: '"team2"', type: 'application/json' });
    await refused(400, 'validation_failed', 'body', 'POST', '/v1/vaults', { raw: 'null', type: 'application/json' });
    await refused(400, 'validation_failed', 'body', 'POST', '/v1/vaults');
    await refused(400, 'validation_failed', 'body', 'PUT', '/v1/vaults/default/secrets/EXISTING', { raw: '', type: 'application/json' });
    // over the 1 MiB body limit (the value limit is far below it)
    await refused(413, 'body_too_large', 'body', 'PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'x'.repeat(1024 * 1024 + 10) } });
    await refused(413, 'body_too_large', 'body', 'POST', '/v1/vaults', { body: { name: 'big', description: 'd'.repeat(2 * 1024 * 1024) } });
    expect(await apiState()).toEqual(before);
  });

  it('text that cannot be stored: NUL characters and unpaired surrogates anywhere (body, query, path, keys)', async () => {
    const before = await apiState();
    await refused(400, 'invalid_text', 'value', 'PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'a\u0000b' } });
    await refused(400, 'invalid_text', 'value', 'PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'lone \uD800 high' } });
    await refused(400, 'invalid_text', 'value', 'PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'lone \uDC00 low' } });
    await refused(400, 'invalid_text', 'description', 'PUT', '/v1/vaults/default/secrets/EXISTING', { body: { value: 'v', description: '\u0000' } });
    await refused(400, 'invalid_text', 'tags[1]', 'POST', '/v1/vaults/default/secrets', { body: { name: 'NUL_KEY', value: 'v', tags: ['ok', 'x\u0000'] } });
    await refused(400, 'invalid_text', 'fields.access_token', 'POST', '/v1/vaults/default/secrets', { body: { preset: 'openai', fields: { access_token: 'sk-1234567890abcdef\u0000' } } });
    await refused(400, 'invalid_text', 'fields', 'POST', '/v1/vaults/default/secrets', { body: { preset: 'openai', fields: { 'access\u0000token': 'sk-1234567890abcdefgh' } } });
    await refused(400, 'invalid_text', 'description', 'POST', '/v1/vaults', { body: { name: 'nul-vault', description: 'a\u0000' } });
    await refused(400, 'invalid_text', 'email', 'POST', '/v1/auth/login', { token: null, body: { email: 'a\u0000@b.c', password: 'x'.repeat(12) } });
    await refused(400, 'invalid_text', 'vault', 'GET', '/v1/vaults/%00/secrets');
    await refused(400, 'invalid_text', 'name', 'GET', '/v1/vaults/default/secrets/A%00B/value');
    await refused(400, 'invalid_text', 'q', 'GET', '/v1/vaults/default/secrets?q=%00');
    await refused(400, 'invalid_text', 'prefix', 'GET', '/v1/vaults/default/secrets?prefix=A%00');
    await refused(400, 'invalid_text', 'q', 'GET', '/v1/audit?q=x%00y');
    await refused(400, 'invalid_text', 'actor', 'GET', '/v1/audit?actor=user%3A%00');
    expect(await apiState()).toEqual(before);
    // a surrogate pair (an emoji) is fine and comes back intact
    expect((await call('PUT', '/v1/vaults/team/secrets/EMOJI', { body: { value: 'key-\u{1F511}-é' } })).status).toBe(201);
    expect((await call('GET', '/v1/vaults/team/secrets/EMOJI/value')).json.value).toBe('key-\u{1F511}-é');
    expect((await call('DELETE', '/v1/vaults/team/secrets/EMOJI')).status).toBe(200);
  });

  it('vaults: types, required and unknown fields, names, fallback chains, 404 and 409', async () => {
    const before = await apiState();
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: {} });
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: { name: 5 } });
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: { name: '' } });
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: { name: 'Team Two' } });
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: { name: 'UPPER' } });
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: { name: '-dash' } });
    await refused(400, 'validation_failed', 'name', 'POST', '/v1/vaults', { body: { name: 'v'.repeat(LIMITS.vaultName + 1) } });
    await refused(400, 'validation_failed', 'colour', 'POST', '/v1/vaults', { body: { name: 'ok-name', colour: 'red' } });
    await refused(400, 'validation_failed', 'passthrough', 'POST', '/v1/vaults', { body: { name: 'ok-name', passthrough: 'yes' } });
    await refused(400, 'validation_failed', 'description', 'POST', '/v1/vaults', { body: { name: 'ok-name', description: 'd'.repeat(LIMITS.description + 1) } });
    await refused(400, 'validation_failed', 'fallback', 'POST', '/v1/vaults', { body: { name: 'ok-name', fallback: 'team' } });
    await refused(400, 'validation_failed', 'fallback', 'POST', '/v1/vaults', { body: { name: 'ok-name', fallback: Array.from({ length: LIMITS.fallbackDepth + 1 }, (_, i) => `v${i}`) } });
    await refused(400, 'validation_failed', 'fallback[0]', 'POST', '/v1/vaults', { body: { name: 'ok-name', fallback: ['no-such-vault'] } });
    await refused(400, 'validation_failed', 'fallback[1]', 'POST', '/v1/vaults', { body: { name: 'ok-name', fallback: ['team', 'team'] } });
    await refused(400, 'validation_failed', 'fallback[0]', 'POST', '/v1/vaults', { body: { name: 'ok-name', fallback: ['ok-name'] } });
    await refused(400, 'validation_failed', 'fallback[0]', 'POST', '/v1/vaults', { body: { name: 'ok-name', fallback: [7] } });
    await refused(409, 'vault_exists', 'name', 'POST', '/v1/vaults', { body: { name: 'team' } });
    await refused(404, 'vault_not_found', null, 'PATCH', '/v1/vaults/no-such-vault', { body: { description: 'x' } });
    await refused(400, 'validation_failed', 'fallback[0]', 'PATCH', '/v1/vaults/team', { body: { fallback: ['team'] } });
    await refused(400, 'validation_failed', 'name', 'PATCH', '/v1/vaults/team', { body: { name: 'renamed' } });
    await refused(404, 'vault_not_found', null, 'DELETE', '/v1/vaults/no-such-vault');
    await refused(400, 'validation_failed', 'vault', 'DELETE', `/v1/vaults/${'v'.repeat(LIMITS.vaultName + 1)}`);
    await refused(400, 'validation_failed', 'expect_secrets', 'DELETE', '/v1/vaults/team?expect_secrets=-1');
    await refused(400, 'validation_failed', 'expect_secrets', 'DELETE', '/v1/vaults/team?expect_secrets=two');
    expect(await apiState()).toEqual(before);
  });

  it('vault delete with expect_secrets: any other count than the vault holds is 409 vault_changed and deletes nothing; the right one deletes', async () => {
    expect((await call('POST', '/v1/vaults', { body: { name: 'confirmed' } })).status).toBe(201);
    for (const name of ['ONE', 'TWO']) expect((await call('POST', '/v1/vaults/confirmed/secrets', { body: { name, value: 'v' } })).status).toBe(201);
    // the person was asked about 1 secret (or none): a second one arrived since
    for (const n of [0, 1, 3]) {
      const r = await refused(409, 'vault_changed', null, 'DELETE', `/v1/vaults/confirmed?expect_secrets=${n}`);
      expect(r.json.detail).toContain(`holds 2 secrets, not the ${n} expected`);
    }
    expect((await call('GET', '/v1/vaults/confirmed/secrets/TWO/value')).json.value).toBe('v');
    const ok = await call('DELETE', '/v1/vaults/confirmed?expect_secrets=2');
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json).toEqual({ deleted: 'confirmed', secrets: 2 });
    expect((await call('GET', '/v1/vaults/confirmed/secrets')).status).toBe(404);
  });

  it('secrets create: names, values, tags, types, unknown fields, unknown vault, 409', async () => {
    const before = await apiState();
    const post = (body: unknown) => ['POST', '/v1/vaults/default/secrets', { body }] as const;
    // names
    await refused(400, 'validation_failed', 'name', ...post({ value: 'v' }));
    await refused(400, 'validation_failed', 'name', ...post({ name: 42, value: 'v' }));
    await refused(400, 'validation_failed', 'name', ...post({ name: 'A'.repeat(LIMITS.secretName + 1), value: 'v' }));
    for (const bad of ['lower_case', 'HAS SPACE', 'DASH-ED', '1_STARTS_WITH_DIGIT', '_LEADING', 'UNICODÉ', '', 'skill:OpenAI:key', 'skill:openai', 'skill:openai:', 'skill::key',
      'skill:open ai:key', 'skill:openai:Key', 'skill:-x:key', 'skill:openai:key:extra', 'SKILL:openai:key']) {
      await refused(400, 'validation_failed', 'name', ...post({ name: bad, value: 'v' }));
    }
    // values
    await refused(400, 'validation_failed', 'value', ...post({ name: 'NEW_KEY' }));
    await refused(400, 'validation_failed', 'value', ...post({ name: 'NEW_KEY', value: 12345 }));
    await refused(400, 'validation_failed', 'value', ...post({ name: 'NEW_KEY', value: null }));
    await refused(400, 'validation_failed', 'value', ...post({ name: 'NEW_KEY', value: '' }));
    await refused(400, 'validation_failed', 'value', ...post({ name: 'NEW_KEY', value: 'x'.repeat(LIMITS.valueBytes + 1) }));
    // under the character limit, over the byte limit (2 bytes each in UTF-8)
    await refused(400, 'value_too_large', 'value', ...post({ name: 'NEW_KEY', value: 'é'.repeat(LIMITS.valueBytes / 2 + 1) }));
    // category, description, tags
    await refused(400, 'validation_failed', 'category', ...post({ name: 'NEW_KEY', value: 'v', category: 'bank_pin' }));
    await refused(400, 'validation_failed', 'category', ...post({ name: 'NEW_KEY', value: 'v', category: 3 }));
    await refused(400, 'validation_failed', 'description', ...post({ name: 'NEW_KEY', value: 'v', description: 'd'.repeat(LIMITS.description + 1) }));
    await refused(400, 'validation_failed', 'description', ...post({ name: 'NEW_KEY', value: 'v', description: { text: 'x' } }));
    await refused(400, 'validation_failed', 'tags', ...post({ name: 'NEW_KEY', value: 'v', tags: Array.from({ length: LIMITS.tags + 1 }, (_, i) => `t${i}`) }));
    await refused(400, 'validation_failed', 'tags', ...post({ name: 'NEW_KEY', value: 'v', tags: 'one,two' }));
    await refused(400, 'validation_failed', 'tags[0]', ...post({ name: 'NEW_KEY', value: 'v', tags: [5] }));
    await refused(400, 'validation_failed', 'tags[1]', ...post({ name: 'NEW_KEY', value: 'v', tags: ['ok', 'has space'] }));
    await refused(400, 'validation_failed', 'tags[0]', ...post({ name: 'NEW_KEY', value: 'v', tags: ['t'.repeat(LIMITS.tagLength + 1)] }));
    await refused(400, 'validation_failed', 'tags[0]', ...post({ name: 'NEW_KEY', value: 'v', tags: [''] }));
    // unknown fields, unknown vault, existing secret
    await refused(400, 'validation_failed', 'owner', ...post({ name: 'NEW_KEY', value: 'v', owner: 'me' }));
    await refused(400, 'validation_failed', 'version', ...post({ name: 'NEW_KEY', value: 'v', version: 1 }));
    await refused(404, 'vault_not_found', null, 'POST', '/v1/vaults/no-such-vault/secrets', { body: { name: 'NEW_KEY', value: 'v' } });
    await refused(409, 'secret_exists', 'name', ...post({ name: 'EXISTING', value: 'v' }));
    await refused(409, 'secret_exists', 'name', ...post({ name: 'skill:aws:region', value: 'eu-west-1' }));
    expect(await apiState()).toEqual(before);
  });

  it('presets: unknown preset, missing or malformed fields, mixing name/value; one bad field creates none of the secrets', async () => {
    const before = await apiState();
    const post = (body: unknown) => ['POST', '/v1/vaults/default/secrets', { body }] as const;
    const AWS = { access_key_id: 'AKIA' + 'ABCDEFGHIJ234567', secret_access_key: 'a'.repeat(40), region: 'us-west-2' };
    await refused(400, 'validation_failed', 'preset', ...post({ preset: 'myspace', fields: { access_token: 'x' } }));
    await refused(400, 'validation_failed', 'preset', ...post({ preset: 7, fields: {} }));
    await refused(400, 'validation_failed', 'fields', ...post({ preset: 'openai' }));
    await refused(400, 'validation_failed', 'fields', ...post({ preset: 'openai', fields: ['sk-1234567890abcdefgh'] }));
    await refused(400, 'validation_failed', 'fields.access_token', ...post({ preset: 'openai', fields: {} }));
    await refused(400, 'validation_failed', 'fields.access_token', ...post({ preset: 'openai', fields: { access_token: '' } }));
    await refused(400, 'validation_failed', 'fields.access_token', ...post({ preset: 'openai', fields: { access_token: 1234 } }));
    await refused(400, 'invalid_format', 'fields.access_token', ...post({ preset: 'openai', fields: { access_token: 'not-an-openai-key' } }));
    await refused(400, 'invalid_format', 'fields.access_token', ...post({ preset: 'openai', fields: { access_token: 'sk-short' } }));
    await refused(400, 'validation_failed', 'fields.organisation', ...post({ preset: 'openai', fields: { access_token: 'sk-1234567890abcdefgh', organisation: 'x' } }));
    // keys that do not look like names are not echoed back: the object holding them is the field
    await refused(400, 'validation_failed', 'fields', ...post({ preset: 'openai', fields: { 'sk-1234567890abcdefgh': 'x' } }));
    await refused(400, 'validation_failed', 'fields', ...post({ preset: 'openai', fields: { ['k'.repeat(65)]: 'x' } }));
    await refused(400, 'validation_failed', 'body', ...post({ preset: 'openai', fields: { access_token: 'sk-1234567890abcdefgh' }, 'sk-1234567890abcdefgh': 1 }));
    await refused(400, 'validation_failed', 'name', ...post({ preset: 'openai', name: 'OPENAI_KEY', fields: { access_token: 'sk-1234567890abcdefgh' } }));
    await refused(400, 'validation_failed', 'value', ...post({ preset: 'openai', value: 'sk-1234567890abcdefgh' }));
    await refused(400, 'validation_failed', 'fields', ...post({ name: 'PLAIN_KEY', value: 'v', fields: { a: 'b' } }));
    await refused(400, 'validation_failed', 'category', ...post({ preset: 'openai', category: 'nope', fields: { access_token: 'sk-1234567890abcdefgh' } }));
    // AWS: a required field missing, or one bad among good ones: none of the three is created
    await refused(400, 'validation_failed', 'fields.secret_access_key', ...post({ preset: 'aws', fields: { access_key_id: AWS.access_key_id } }));
    await refused(400, 'invalid_format', 'fields.secret_access_key', ...post({ preset: 'aws', fields: { ...AWS, secret_access_key: 'too-short' } }));
    await refused(400, 'invalid_format', 'fields.access_key_id', ...post({ preset: 'aws', fields: { ...AWS, access_key_id: 'akia-lower' } }));
    await refused(400, 'value_too_large', 'fields.app_password', ...post({ preset: 'smtp', fields: { host: 'smtp.example.com', username: 'u', app_password: 'é'.repeat(LIMITS.valueBytes / 2 + 1) } }));
    // the region secret exists already: the whole preset is refused with 409, the other two fields are not created
    await refused(409, 'secret_exists', 'name', ...post({ preset: 'aws', fields: AWS }));
    const listed = await call('GET', '/v1/vaults/default/secrets?prefix=skill:aws:');
    expect(listed.json.items.map((s: { name: string }) => s.name)).toEqual(['skill:aws:region']);
    expect(await apiState()).toEqual(before);
  });

  it('PUT: cas mismatch (409), bad cas, types, names in the path, unknown vault', async () => {
    const before = await apiState();
    const put = (name: string, body: unknown) => ['PUT', `/v1/vaults/default/secrets/${encodeURIComponent(name)}`, { body }] as const;
    await refused(409, 'cas_mismatch', 'cas', ...put('EXISTING', { value: 'v3', cas: 1 }));
    await refused(409, 'cas_mismatch', 'cas', ...put('EXISTING', { value: 'v3', cas: 0 }));
    await refused(409, 'cas_mismatch', 'cas', ...put('EXISTING', { value: 'v3', cas: 99 }));
    await refused(409, 'cas_mismatch', 'cas', ...put('NOT_YET', { value: 'v1', cas: 3 }));
    await refused(400, 'validation_failed', 'cas', ...put('EXISTING', { value: 'v3', cas: -1 }));
    await refused(400, 'validation_failed', 'cas', ...put('EXISTING', { value: 'v3', cas: '2' }));
    await refused(400, 'validation_failed', 'cas', ...put('EXISTING', { value: 'v3', cas: 1.5 }));
    await refused(400, 'validation_failed', 'cas', ...put('EXISTING', { value: 'v3', cas: 1e300 }));
    await refused(400, 'validation_failed', 'cas', ...put('EXISTING', { value: 'v3', cas: null }));
    await refused(400, 'validation_failed', 'value', ...put('EXISTING', {}));
    await refused(400, 'validation_failed', 'value', ...put('EXISTING', { value: ['v'] }));
    await refused(400, 'validation_failed', 'value', ...put('EXISTING', { value: '' }));
    await refused(400, 'validation_failed', 'value', ...put('EXISTING', { value: 'x'.repeat(LIMITS.valueBytes + 1) }));
    await refused(400, 'value_too_large', 'value', ...put('EXISTING', { value: '€'.repeat(Math.floor(LIMITS.valueBytes / 3) + 1) }));
    await refused(400, 'validation_failed', 'name', ...put('EXISTING', { value: 'v', name: 'OTHER' }));
    await refused(400, 'validation_failed', 'tags', ...put('EXISTING', { value: 'v', tags: Array.from({ length: LIMITS.tags + 1 }, () => 't') }));
    await refused(400, 'validation_failed', 'category', ...put('EXISTING', { value: 'v', category: 'x' }));
    await refused(400, 'validation_failed', 'name', ...put('lower_case', { value: 'v' }));
    await refused(400, 'validation_failed', 'name', ...put('WITH SPACE', { value: 'v' }));
    await refused(400, 'validation_failed', 'name', ...put('skill:Bad:key', { value: 'v' }));
    // 129 characters: past the name limit, well inside the router's path-segment limit
    await refused(400, 'validation_failed', 'name', ...put('A'.repeat(LIMITS.secretName + 1), { value: 'v' }));
    await refused(414, 'uri_too_long', 'path', ...put('A'.repeat(600), { value: 'v' }));
    await refused(400, 'bad_url', 'path', 'PUT', '/v1/vaults/default/secrets/BAD%ZZ', { body: { value: 'v' } });
    await refused(404, 'vault_not_found', null, 'PUT', '/v1/vaults/no-such-vault/secrets/NEW_KEY', { body: { value: 'v' } });
    expect(await apiState()).toEqual(before);
    // a 128-character name (the limit) works all the way through the router
    const longest = 'L'.repeat(LIMITS.secretName);
    expect((await call('PUT', `/v1/vaults/team/secrets/${longest}`, { body: { value: 'at-the-limit' } })).status).toBe(201);
    expect((await call('GET', `/v1/vaults/team/secrets/${longest}/value`)).json).toMatchObject({ value: 'at-the-limit' });
    expect((await call('DELETE', `/v1/vaults/team/secrets/${longest}`)).status).toBe(200);
  });

  it('reads: bad version query, unknown secret and version, bad cursor and limit, unknown query parameters', async () => {
    const before = await apiState();
    const v = (q: string) => `/v1/vaults/default/secrets/EXISTING/value?${q}`;
    for (const bad of ['version=abc', 'version=-1', 'version=0', 'version=1.5', 'version=1e0', 'version=0x1', 'version=', 'version=%201', 'version=99999999999999999999', 'version=1&version=2']) {
      await refused(400, 'validation_failed', 'version', 'GET', v(bad));
    }
    await refused(404, 'version_not_found', 'version', 'GET', v('version=3'));
    await refused(400, 'validation_failed', 'version', 'GET', v('version=3000000000'));
    await refused(404, 'version_not_found', 'version', 'GET', v('version=2147483647'));
    await refused(400, 'validation_failed', 'reveal', 'GET', v('reveal=1'));
    await refused(404, 'secret_not_found', null, 'GET', '/v1/vaults/default/secrets/NO_SUCH_SECRET/value');
    await refused(404, 'secret_not_found', null, 'GET', '/v1/vaults/default/secrets/NO_SUCH_SECRET');
    await refused(404, 'vault_not_found', null, 'GET', '/v1/vaults/no-such-vault/secrets/EXISTING/value');
    await refused(404, 'vault_not_found', null, 'GET', '/v1/vaults/no-such-vault/secrets');
    const list = (q: string) => `/v1/vaults/default/secrets?${q}`;
    for (const bad of ['cursor=!!!', `cursor=${'A'.repeat(300)}`, `cursor=${'A'.repeat(600)}`]) await refused(400, 'validation_failed', 'cursor', 'GET', list(bad));
    for (const bad of ['limit=abc', 'limit=-1', 'limit=0', `limit=${LIMITS.listPage + 1}`, 'limit=1.5', 'limit=1e2', 'limit=']) await refused(400, 'validation_failed', 'limit', 'GET', list(bad));
    await refused(400, 'validation_failed', 'category', 'GET', list('category=bank_pin'));
    await refused(400, 'validation_failed', 'prefix', 'GET', list(`prefix=${'P'.repeat(LIMITS.secretName + 1)}`));
    await refused(400, 'validation_failed', 'sort', 'GET', list('sort=name'));
    await refused(400, 'bad_url', 'path', 'GET', '/v1/vaults/default/secrets/%E0%A4%A');
    expect(await apiState()).toEqual(before);
    // a cursor the server returned does work (so the refusals above are about the cursor, not paging)
    const page = await call('GET', list('limit=1'));
    expect(page.json.next_cursor).toEqual(expect.any(String));
    expect((await call('GET', list(`limit=1&cursor=${page.json.next_cursor}`))).status).toBe(200);
  });

  it('delete, rotate, rollback, rotate-all: unknown targets, bad versions and bodies', async () => {
    const before = await apiState();
    await refused(404, 'secret_not_found', null, 'DELETE', '/v1/vaults/default/secrets/NO_SUCH_SECRET');
    await refused(404, 'vault_not_found', null, 'DELETE', '/v1/vaults/no-such-vault/secrets/EXISTING');
    await refused(404, 'secret_not_found', null, 'POST', '/v1/vaults/default/secrets/NO_SUCH_SECRET/rotate');
    await refused(400, 'validation_failed', 'force', 'POST', '/v1/vaults/default/secrets/EXISTING/rotate', { body: { force: true } });
    const rb = '/v1/vaults/default/secrets/EXISTING/rollback';
    await refused(400, 'validation_failed', 'version', 'POST', rb, { body: {} });
    await refused(400, 'validation_failed', 'body', 'POST', rb);
    await refused(400, 'validation_failed', 'version', 'POST', rb, { body: { version: '1' } });
    await refused(400, 'validation_failed', 'version', 'POST', rb, { body: { version: 0 } });
    await refused(400, 'validation_failed', 'version', 'POST', rb, { body: { version: -2 } });
    await refused(400, 'validation_failed', 'version', 'POST', rb, { body: { version: 1.5 } });
    // past a 32-bit integer (the column's type; PostgreSQL answered 500)
    await refused(400, 'validation_failed', 'version', 'POST', rb, { body: { version: 3_000_000_000 } });
    await refused(400, 'validation_failed', 'to', 'POST', rb, { body: { version: 1, to: 2 } });
    await refused(404, 'version_not_found', 'version', 'POST', rb, { body: { version: 9 } });
    await refused(404, 'secret_not_found', null, 'POST', '/v1/vaults/default/secrets/NO_SUCH_SECRET/rollback', { body: { version: 1 } });
    const ra = '/v1/vaults/default/rotate-all';
    await refused(400, 'validation_failed', 'after', 'POST', ra, { body: { after: '!!!' } });
    await refused(400, 'validation_failed', 'after', 'POST', ra, { body: { after: 5 } });
    await refused(400, 'validation_failed', 'limit', 'POST', ra, { body: { limit: 0 } });
    await refused(400, 'validation_failed', 'limit', 'POST', ra, { body: { limit: -5 } });
    await refused(400, 'validation_failed', 'limit', 'POST', ra, { body: { limit: 'all' } });
    await refused(400, 'validation_failed', 'batch', 'POST', ra, { body: { batch: 10 } });
    await refused(404, 'vault_not_found', null, 'POST', '/v1/vaults/no-such-vault/rotate-all');
    expect(await apiState()).toEqual(before);
    // rotate-all and rotate with no body at all, or an empty JSON body, are fine
    expect((await call('POST', ra)).status).toBe(200);
    expect((await call('POST', ra, { raw: '', type: 'application/json' })).json).toMatchObject({ done: true, failed: 0 });
    expect((await call('POST', '/v1/vaults/default/secrets/EXISTING/rotate')).status).toBe(200);
    expect((await call('POST', '/v1/vaults/default/secrets/EXISTING/rotate', { body: {} })).status).toBe(200);
  });

  it('audit and keys: bad filters, cursors, times, checkpoints, limits and unknown fields', async () => {
    const before = await apiState();
    const a = (q: string) => `/v1/audit?${q}`;
    for (const bad of ['cursor=abc', 'cursor=-1', 'cursor=1.5', `cursor=${'9'.repeat(16)}`]) await refused(400, 'validation_failed', 'cursor', 'GET', a(bad));
    for (const bad of ['limit=0', 'limit=abc', 'limit=1001', 'limit=-3']) await refused(400, 'validation_failed', 'limit', 'GET', a(bad));
    await refused(400, 'validation_failed', 'since', 'GET', a('since=yesterday'));
    await refused(400, 'validation_failed', 'until', 'GET', a('until=2024-13-45T99:00:00Z'));
    // a route that takes no query parameters refuses an unknown one (a misspelt filter must not list everything)
    for (const path of ['/v1/agents?status=revoked', '/v1/vaults?name=x', '/v1/tokens?all=1', '/v1/vaults/default/services?enabled=true']) {
      const r = await call('GET', path);
      expect(r.status, path).toBe(400);
      expect(r.json).toMatchObject({ code: 'validation_failed', field: path.split('?')[1]!.split('=')[0] });
    }
    // Date.parse takes these; an ISO time they are not
    for (const bad of ['1', '-1', '2024', 'Nov 30 2026']) await refused(400, 'validation_failed', 'since', 'GET', a(`since=${encodeURIComponent(bad)}`));
    const neg = await call('GET', a('limit=-1'));
    expect(neg.json.detail).toBe('limit: must be a whole number');
    // past the year 9999 an ISO time is written +010000-…, which would sort before every event
    await refused(400, 'validation_failed', 'since', 'GET', a('since=10000-01-01'));
    await refused(400, 'validation_failed', 'before', 'POST', '/v1/audit/prune', { body: { before: '+010000-01-01T00:00:00Z' } });
    await refused(400, 'validation_failed', 'outcome', 'GET', a('outcome=maybe'));
    await refused(400, 'validation_failed', 'agent', 'GET', a('agent=bot&actor=user:x'));
    await refused(400, 'validation_failed', 'q', 'GET', a(`q=${'q'.repeat(257)}`));
    await refused(400, 'validation_failed', 'page', 'GET', a('page=2'));
    const verify = '/v1/audit/verify';
    await refused(400, 'validation_failed', 'checkpoint.seq', 'POST', verify, { body: { checkpoint: { seq: 'x', hash: 'h', ts: 't', mac: 'm' } } });
    await refused(400, 'validation_failed', 'checkpoint.mac', 'POST', verify, { body: { checkpoint: { seq: 1, hash: 'h', ts: 't' } } });
    await refused(400, 'validation_failed', 'checkpoint.seq', 'POST', verify, { body: { checkpoint: { seq: -1, hash: 'h', ts: 't', mac: 'm' } } });
    await refused(400, 'validation_failed', 'checkpoint', 'POST', verify, { body: { checkpoint: 'latest' } });
    await refused(400, 'validation_failed', 'extra', 'POST', verify, { body: { extra: 1 } });
    await refused(400, 'validation_failed', 'before', 'POST', '/v1/audit/prune', { body: {} });
    await refused(400, 'validation_failed', 'before', 'POST', '/v1/audit/prune', { body: { before: 'last tuesday' } });
    await refused(400, 'validation_failed', 'before', 'POST', '/v1/audit/prune', { body: { before: 20240101 } });
    await refused(400, 'validation_failed', 'kek_version', 'POST', '/v1/keys/rotate', { body: { kek_version: 9 } });
    await refused(400, 'validation_failed', 'limit', 'POST', '/v1/keys/rewrap', { body: { limit: -1 } });
    await refused(400, 'validation_failed', 'limit', 'POST', '/v1/keys/rewrap', { body: { limit: 'x' } });
    await refused(400, 'validation_failed', 'limit', 'POST', '/v1/keys/rewrap', { body: { limit: 0 } });
    await refused(400, 'validation_failed', 'all', 'POST', '/v1/keys/rewrap', { body: { all: true } });
    expect(await apiState()).toEqual(before);
    // a checkpoint that does not match is a verification result (200, ok: false), not an error
    const cp = await call('POST', verify, { body: { checkpoint: { seq: 999_999, hash: 'a'.repeat(64), ts: new Date().toISOString(), mac: 'b'.repeat(64) } } });
    expect(cp.status).toBe(200);
    expect(cp.json.ok).toBe(false);
  });

  it('type confusion on every field of every write: always a 4xx problem or a success, never a 500', async () => {
    expect((await call('POST', '/v1/vaults', { body: { name: 'fuzz' } })).status).toBe(201);
    expect((await call('PUT', '/v1/vaults/fuzz/secrets/FUZZ', { body: { value: 'v1' } })).status).toBe(201);
    const junk: unknown[] = [null, 0, -1, 1.5, 1e308, -0, true, false, '', ' ', 'x'.repeat(70_000), '\u0000', '\uD800', [], [null], {}, { a: { b: { c: [] } } }, '../../etc/passwd', "'; drop table secrets; --"];
    const targets: Array<{ method: string; path: string; base: Record<string, unknown> }> = [
      { method: 'POST', path: '/v1/vaults/fuzz/secrets', base: { name: 'FUZZ_NEW', value: 'v', category: 'custom', description: 'd', tags: ['t'] } },
      { method: 'POST', path: '/v1/vaults/fuzz/secrets', base: { preset: 'openai', fields: { access_token: 'sk-1234567890abcdefgh' } } },
      { method: 'PUT', path: '/v1/vaults/fuzz/secrets/FUZZ', base: { value: 'v', cas: 1, category: 'custom', description: 'd', tags: ['t'] } },
      { method: 'POST', path: '/v1/vaults/fuzz/secrets/FUZZ/rollback', base: { version: 1 } },
      { method: 'POST', path: '/v1/vaults/fuzz/rotate-all', base: { after: 'RlVaWg', limit: 5 } },
      { method: 'POST', path: '/v1/vaults', base: { name: 'fuzz2', description: 'd', fallback: ['fuzz'], passthrough: false } },
      { method: 'PATCH', path: '/v1/vaults/fuzz', base: { description: 'd', fallback: [], passthrough: false } },
      { method: 'POST', path: '/v1/audit/verify', base: { checkpoint: { seq: 1, hash: 'h', ts: 't', mac: 'm' } } },
      { method: 'POST', path: '/v1/keys/rewrap', base: { limit: 5 } },
    ];
    let requests = 0;
    for (const t of targets) {
      for (const key of Object.keys(t.base)) {
        for (const j of junk) {
          const r = await call(t.method, t.path, { body: { ...t.base, [key]: j } });
          requests++;
          expect(r.status, `${t.method} ${t.path} ${key}=${JSON.stringify(j)?.slice(0, 40)}: ${r.text.slice(0, 200)}`).toBeLessThan(500);
          if (r.status >= 400) {
            expect(r.type).toMatch(/^application\/problem\+json/);
            expect(r.json.code).toMatch(/^[a-z_]+$/);
          }
        }
      }
      // the whole body as each junk value
      for (const j of junk) {
        const r = await call(t.method, t.path, { body: j });
        requests++;
        expect(r.status, `${t.method} ${t.path} body=${JSON.stringify(j)?.slice(0, 40)}`).toBeLessThan(500);
      }
    }
    expect(requests).toBeGreaterThan(500);
    // the store is still consistent
    expect((await call('GET', '/v1/audit/verify')).json.ok).toBe(true);
  });

  it('no request in this file got a 5xx', () => {
    expect(seen500).toEqual([]);
  });
});
