/**
 * The web console in a real browser (Debian chromium via playwright-core) against a real server
 * (startServer, SQLite in a temp home): first run with the owner token, login/logout, a preset
 * secret whose value reaches the page only on Reveal, an agent whose token is shown once, an
 * access request approved with an expiry, rotate all, the audit log and its chain, status, a
 * service, a proposal approved on the approval page, session expiry, narrow screens, and no CSP
 * violation anywhere. Screenshots of every page go to test-artifacts/console/.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBrowser, ensureConsoleBuilt, launchBrowser } from './helpers/browser.js';
import { createTestCa } from './helpers/test-ca.js';

const MASTER = '5c'.repeat(32);
const EMAIL = 'owner@example.com';
const PASSWORD = 'correct horse battery staple';
const SENTINEL = `sk-SENTINEL${randomBytes(12).toString('hex')}`;
const STRIPE_VALUE = `sk_test_PROPOSAL${randomBytes(8).toString('hex')}`;
const SHOTS = join(process.cwd(), 'test-artifacts', 'console');

describeBrowser('web console', () => {
  let home: string;
  let server: RunningServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let ownerToken: string;
  let agentToken = '';
  /** every /v1 URL the page requested, and every /v1 response body it received */
  const requests: string[] = [];
  const bodies: Array<{ url: string; body: string; at: number }> = [];
  const problems: string[] = [];
  const cspViolations: string[] = [];
  let revealAt = Number.POSITIVE_INFINITY;
  /** a local HTTPS upstream standing in for Stripe: what the base-URL proxy sent it */
  let upstream: HttpsServer;
  let upstreamHost = '';
  const upstreamSaw: Array<{ url: string; authorization: string | undefined }> = [];

  async function call(method: string, path: string, opts: { token?: string; body?: unknown } = {}) {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(server.url + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  /** Goes to a page through the navigation (closing whatever dialog a failed step left open). */
  async function nav(label: string) {
    if (await page.locator('dialog[open]').count()) await page.reload();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: false }).first().click();
    await page.getByRole('heading', { level: 1, name: label }).waitFor();
  }

  /** Form controls without a label (an accessibility regression). */
  async function unlabelled(): Promise<string[]> {
    // runs in the page (the test's tsconfig has no DOM types: the page's globals are `any` here)
    return page.evaluate(() =>
      [...(globalThis as any).document.querySelectorAll('input, select, textarea')]
        .filter((el: any) => el.type !== 'hidden')
        .filter((el: any) => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')))
        .map((el: any) => String(el.outerHTML).slice(0, 120)),
    );
  }

  async function storage(): Promise<string> {
    return page.evaluate(() => JSON.stringify({ local: { ...(globalThis as any).localStorage }, session: { ...(globalThis as any).sessionStorage } }));
  }

  beforeAll(async () => {
    ensureConsoleBuilt();
    mkdirSync(SHOTS, { recursive: true });
    home = await mkdtemp(join(tmpdir(), 'lk-console-'));
    const ca = await createTestCa();
    const leaf = await ca.issue(['127.0.0.1']);
    writeFileSync(join(home, 'upstream-ca.pem'), ca.certPem);
    upstream = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
      upstreamSaw.push({ url: req.url ?? '', authorization: req.headers.authorization });
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'balance', available: [{ amount: 4200, currency: 'usd' }] }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamHost = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    server = await startServer({
      home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent',
      env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_EGRESS_ALLOW: '127.0.0.1/32', LATCHKEY_UPSTREAM_CA: join(home, 'upstream-ca.pem') },
    });
    ownerToken = server.initialized!.ownerToken;
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: server.url });
    // CSP violations are reported to the page: hand every one to the test, across navigations
    await context.exposeBinding('__reportCsp', (_source, text: string) => {
      cspViolations.push(text);
    });
    await context.addInitScript(() => {
      const g = globalThis as any;
      g.document.addEventListener('securitypolicyviolation', (e: any) => {
        g.__reportCsp(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
      });
    });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('console', (m) => {
      const t = m.text();
      if (/Content.Security.Policy|Refused to/i.test(t)) problems.push(`csp: ${t}`);
      else if (m.type() === 'error' && !/status of 4\d\d/.test(t)) problems.push(`console error: ${t}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      if (r.url().includes('/v1/')) requests.push(`${r.method()} ${r.url()} ${r.postData() ?? ''}`);
    });
    page.on('response', async (r) => {
      if (!r.url().includes('/v1/')) return;
      const at = Date.now();
      try {
        bodies.push({ url: r.url(), body: await r.text(), at });
      } catch {
        // a body the page navigated away from
      }
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    upstream?.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it('first run: the owner token, then email and password, then a cookie session', async () => {
    await page.goto('/');
    await expect.poll(() => page.getByRole('heading', { name: 'Log in' }).isVisible()).toBe(true);
    await shot('login');
    await page.getByRole('link', { name: 'Set up the owner account' }).click();
    await page.getByRole('heading', { name: 'Set up Latchkey' }).waitFor();
    await page.getByLabel('Owner token').fill('lk_pat_not-a-real-one');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('This token is not valid').waitFor();
    await page.getByLabel('Owner token').fill(ownerToken);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill('short');
    await page.getByLabel('Repeat the password').fill('short');
    await page.getByRole('button', { name: 'Save and log in' }).click();
    await page.getByText('Use at least 12 characters.').waitFor();
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Repeat the password').fill(PASSWORD);
    await shot('setup');
    expect(await unlabelled()).toEqual([]);
    await page.getByRole('button', { name: 'Save and log in' }).click();
    await page.getByRole('heading', { name: 'Secrets' }).waitFor();
    await expect.poll(() => page.locator('.who-email').textContent()).toBe(EMAIL);

    // the owner token was used in memory only; the session is an HttpOnly SameSite=Strict cookie
    expect(await storage()).not.toContain(ownerToken);
    expect(await page.content()).not.toContain(ownerToken);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'lk_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    // opening the console logged out asked the server nothing it would refuse (no anonymous auth.failure rows)
    const failures = (await call('GET', '/v1/audit?action=auth.failure', { token: ownerToken })).json.items as Array<{ details: { credential?: string } }>;
    expect(failures.filter((e) => e.details.credential === 'none')).toEqual([]);
    // the server agrees: the owner now has that email and can log in with the password
    expect((await call('GET', '/v1/auth/me', { token: ownerToken })).json).toMatchObject({ email: EMAIL, role: 'owner' });
  });

  it('logout, a wrong password, login; who am I', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    await page.getByText('You have logged out.').waitFor();
    expect((await context.cookies()).find((c) => c.name === 'lk_session')).toBeUndefined();
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill('wrong password entirely');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText('Email or password is wrong.').waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Secrets' }).waitFor();
    await page.getByText('No secrets in this vault yet').waitFor();
    await shot('secrets-empty');

    await page.locator('.who').click();
    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    await page.getByText('owner', { exact: true }).first().waitFor();
    expect(await page.locator('.facts').textContent()).toContain(EMAIL);
    await shot('account');
  });

  it('adds an OpenAI key with the preset: format checked before sending, value never in the page', async () => {
    await nav('Secrets');
    await page.getByRole('button', { name: 'Add secret' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add secret' });
    await dialog.waitFor();
    // Escape closes the dialog (keyboard), and it opens again
    await page.keyboard.press('Escape');
    await expect.poll(() => dialog.isVisible()).toBe(false);
    await page.getByRole('button', { name: 'Add secret' }).click();
    await dialog.waitFor();

    // a preset shows its fields, marks optional ones and names the secrets skill:<platform>:<field>
    await dialog.getByLabel('Platform', { exact: true }).selectOption('google');
    await dialog.getByText('(optional)').first().waitFor();
    expect(await dialog.getByText('(optional)').count()).toBe(3); // OAuth client id + secret, description
    await dialog.getByText('skill:google:oauth_client_secret').waitFor();
    await dialog.getByLabel('Platform', { exact: true }).selectOption('openai');
    await dialog.getByText('skill:openai:access_token').waitFor();
    expect(await unlabelled()).toEqual([]);

    const before = requests.length;
    await dialog.getByLabel('API Key').fill('not-a-key');
    await dialog.getByRole('button', { name: 'Save secret' }).click();
    await dialog.getByText('Not a valid OpenAI API Key: expected sk-....').waitFor();
    expect(requests.slice(before).filter((r) => r.startsWith('POST'))).toEqual([]); // refused in the browser

    await dialog.getByLabel('API Key').fill(SENTINEL);
    expect(await dialog.getByText('Not a valid OpenAI API Key').count()).toBe(0); // the error goes as the field is edited
    await dialog.getByLabel('Description').fill('The support bot');
    await shot('add-secret');
    await dialog.getByRole('button', { name: 'Save secret' }).click();
    await page.getByText('Created skill:openai:access_token.').waitFor();
    const row = page.getByRole('row', { name: /skill:openai:access_token/ });
    await row.waitFor();
    expect(await row.locator('.cat-skill_credential').textContent()).toBe('Skill credential');
    expect(await row.textContent()).toContain('openai');
    await shot('secrets');

    // the value: sent once in the create request body, never in a URL, the page, storage, or a response
    expect(await page.content()).not.toContain(SENTINEL);
    expect(await storage()).not.toContain(SENTINEL);
    expect(page.url()).not.toContain(SENTINEL);
    expect(requests.filter((r) => r.split(' ')[1]!.includes(SENTINEL))).toEqual([]);
    expect(bodies.filter((b) => b.body.includes(SENTINEL))).toEqual([]);
    expect((await call('GET', '/v1/vaults/default/secrets/skill:openai:access_token', { token: ownerToken })).json).toMatchObject({ preset: 'openai', category: 'skill_credential', version: 1 });

    // search and category filter
    await page.getByLabel('Search').fill('nothing-like-this');
    await page.getByText('No secret matches').waitFor();
    await page.getByLabel('Search').fill('openai');
    await row.waitFor();
    await page.getByLabel('Category').selectOption('cloud_storage');
    await page.getByText('No secret matches').waitFor();
    await page.getByLabel('Category').selectOption('');
    await row.waitFor();
  });

  it('view: the value appears only after Reveal (audited), and goes on Hide', async () => {
    await page.getByRole('link', { name: 'skill:openai:access_token', exact: true }).click();
    await page.getByRole('heading', { name: 'skill:openai:access_token' }).waitFor();
    await page.getByRole('heading', { name: 'History' }).waitFor();
    expect(await page.content()).not.toContain(SENTINEL);
    await shot('secret-detail');
    expect(await unlabelled()).toEqual([]);

    revealAt = Date.now();
    await page.getByRole('button', { name: 'Reveal', exact: true }).click();
    await expect.poll(() => page.getByTestId('secret-value').textContent()).toBe(SENTINEL);
    expect(await page.content()).toContain(SENTINEL);
    expect(page.url()).not.toContain(SENTINEL);
    expect(await storage()).not.toContain(SENTINEL);
    // the only response that carried it is the audited value read
    const carrying = bodies.filter((b) => b.body.includes(SENTINEL)).map((b) => new URL(b.url).pathname);
    expect(carrying).toEqual(['/v1/vaults/default/secrets/skill%3Aopenai%3Aaccess_token/value']);
    await page.getByRole('button', { name: 'Hide' }).click();
    await expect.poll(async () => (await page.content()).includes(SENTINEL)).toBe(false);
    const reads = await call('GET', '/v1/audit?action=secret.read', { token: ownerToken });
    expect(reads.json.items[0]).toMatchObject({ action: 'secret.read', actor: `user:${EMAIL}`, target: 'skill:openai:access_token', outcome: 'ok' });
  });

  it('a reveal still in flight when the page moves to another secret is not shown under that one', async () => {
    const A = 'RACE_A';
    const B = 'RACE_B';
    const valueA = `race-a-${SENTINEL}`;
    expect((await call('PUT', `/v1/vaults/default/secrets/${A}`, { token: ownerToken, body: { value: valueA } })).status).toBe(201);
    expect((await call('PUT', `/v1/vaults/default/secrets/${B}`, { token: ownerToken, body: { value: 'race-b' } })).status).toBe(201);
    // B's page, then A's within the app (the detail page stays mounted), reveal A slowly, back to B
    await page.goto(`/secrets/${B}`);
    await page.getByRole('heading', { name: B }).waitFor();
    await page.evaluate(`history.pushState({}, '', '/secrets/${A}'); dispatchEvent(new PopStateEvent('popstate'));`);
    await page.getByRole('heading', { name: A }).waitFor();
    await page.route(`**/secrets/${A}/value*`, async (route) => {
      await new Promise((r) => setTimeout(r, 700));
      await route.continue();
    });
    await page.getByRole('button', { name: 'Reveal', exact: true }).click();
    await page.goBack();
    await page.getByRole('heading', { name: B }).waitFor();
    await new Promise((r) => setTimeout(r, 1200));
    expect(await page.content()).not.toContain(valueA);
    expect(await page.getByTestId('secret-value').count()).toBe(0);
    await page.unroute(`**/secrets/${A}/value*`);
    for (const n of [A, B]) expect((await call('DELETE', `/v1/vaults/default/secrets/${n}`, { token: ownerToken })).status).toBe(200);
  });

  it('creates an agent; its token is shown once and works', async () => {
    await nav('Agents');
    await page.getByText('No agents yet').waitFor();
    await page.getByRole('button', { name: 'Create agent' }).click();
    const form = page.locator('form').filter({ has: page.getByLabel('Name') });
    await form.getByLabel('Name').fill('ci-bot');
    await form.getByLabel('Description').fill('Runs the nightly jobs');
    expect(await form.getByRole('checkbox', { name: 'default' }).isChecked()).toBe(true);
    expect(await unlabelled()).toEqual([]);
    await form.getByRole('button', { name: 'Create agent' }).click();
    const dialog = page.getByRole('dialog', { name: 'Token for agent ci-bot' });
    await dialog.waitFor();
    agentToken = (await dialog.getByTestId('once-token').textContent())!.trim();
    expect(agentToken).toMatch(/^lk_agent_/);
    await shot('agent-token');
    await dialog.getByRole('button', { name: 'I have saved it' }).click();
    await expect.poll(() => dialog.isVisible()).toBe(false);
    expect(await page.content()).not.toContain(agentToken);
    expect(await storage()).not.toContain(agentToken);
    const row = page.getByRole('row', { name: /ci-bot/ });
    await row.waitFor();
    expect(await row.textContent()).toContain('active');
    expect(await row.textContent()).toContain('default');
    await shot('agents');
    expect((await call('GET', '/v1/auth/me', { token: agentToken })).json).toMatchObject({ kind: 'agent', name: 'ci-bot' });
  });

  it("approves the agent's access request with an expiry; the agent can then read the value", async () => {
    const path = '/v1/agent/secrets/skill:openai:access_token?vault=default';
    expect((await call('GET', path, { token: agentToken })).status).toBe(403);
    const req = await call('POST', '/v1/vaults/default/grants', { token: agentToken, body: { secret: 'skill:openai:access_token', mode: 'read', reason: 'summarise support tickets' } });
    expect(req.status).toBe(201);

    await nav('Access requests');
    const row = page.getByRole('row', { name: /summarise support tickets/ });
    await row.waitFor();
    expect(await row.textContent()).toContain('ci-bot');
    expect(await row.textContent()).toContain('pending');
    await shot('access-requests');
    await row.getByRole('button', { name: "Approve ci-bot's request for skill:openai:access_token" }).click();
    const dialog = page.getByRole('dialog', { name: 'Approve access' });
    await dialog.getByText('A read grant hands the raw value to the agent').waitFor();
    await dialog.getByLabel('Expires').selectOption('1d');
    expect(await unlabelled()).toEqual([]);
    await shot('access-approve');
    await dialog.getByRole('button', { name: 'Approve' }).click();
    await page.getByText("Approved ci-bot's read of skill:openai:access_token.").waitFor();
    await page.getByText('No pending requests').waitFor();
    await page.getByRole('button', { name: 'Approved', exact: true }).click();
    await page.getByRole('row', { name: /summarise support tickets/ }).getByRole('button', { name: /Revoke/ }).waitFor();

    const vend = await call('GET', path, { token: agentToken });
    expect(vend.status).toBe(200);
    expect(vend.json.value).toBe(SENTINEL);
    const exp = Date.parse(vend.json.grant.expires_at);
    expect(Math.abs(exp - (Date.now() + 86_400_000))).toBeLessThan(120_000);
  });

  it('rotate all shows progress and finishes', async () => {
    await nav('Secrets');
    await page.getByRole('button', { name: 'Rotate all' }).click();
    const dialog = page.getByRole('dialog', { name: 'Rotate all secrets' });
    await dialog.getByRole('button', { name: 'Rotate all' }).click();
    await dialog.getByText('Finished').waitFor();
    expect(await dialog.getByRole('status').textContent()).toContain('1 of 1 re-encrypted');
    expect(await dialog.locator('progress').getAttribute('value')).toBe('1');
    await shot('rotate-all');
    await dialog.getByRole('button', { name: 'Close', exact: true }).click();
    const row = page.getByRole('row', { name: /skill:openai:access_token/ });
    await expect.poll(async () => (await row.locator('td').nth(5).textContent())?.trim()).not.toBe('never');
    // the value did not change
    expect((await call('GET', '/v1/vaults/default/secrets/skill:openai:access_token/value', { token: ownerToken })).json.value).toBe(SENTINEL);
  });

  it('audit log: the actions above, filters, outcome colours and a verified chain', async () => {
    await nav('Audit log');
    await page.getByText('Chain verified.').waitFor();
    for (const action of ['user.update', 'auth.login', 'auth.failure', 'secret.create', 'secret.read', 'agent.create', 'grant.request', 'grant.approve', 'vault.rotate_all']) {
      expect(await page.locator(`tr[data-action="${action}"]`).count(), action).toBeGreaterThan(0);
    }
    expect(await unlabelled()).toEqual([]);
    await shot('audit');

    await page.getByLabel('Action').selectOption('grant.approve');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(async () => [...new Set(await page.locator('tbody tr').evaluateAll((rows) => rows.map((r: any) => r.getAttribute('data-action'))))]).toEqual(['grant.approve']);

    await page.getByLabel('Action').selectOption('');
    await page.getByLabel('Outcome').selectOption('denied');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(async () => page.locator('tbody tr.outcome-denied').count()).toBeGreaterThan(0);
    expect(await page.locator('tbody tr:not(.outcome-denied)').count()).toBe(0);
    const denied = await page.locator('tbody tr').evaluateAll((rows) => rows.map((r: any) => r.getAttribute('data-action')));
    expect(denied).toEqual(expect.arrayContaining(['auth.failure', 'secret.vend']));
    await shot('audit-denied');

    await page.getByRole('button', { name: 'Reset' }).click();
    await page.getByLabel('Search').fill('ci-bot');
    await page.getByLabel('Time').selectOption('1h');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(async () => page.locator('tbody tr[data-action="agent.create"]').count()).toBe(1);
  });

  it('status: backend, counts by category, keys, audit head and an activity chart', async () => {
    await nav('Status');
    await page.getByRole('heading', { name: 'Activity per hour' }).waitFor();
    await page.getByText('SQLite').waitFor();
    await page.getByTestId('activity-chart').waitFor();
    // per hour: reads (the reveal above) and denials (the refused agent); proxied requests are checked after the round trip
    expect(await page.locator('[data-testid="activity-chart"] rect.bar-reads').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-testid="activity-chart"] rect.bar-denied').count()).toBeGreaterThan(0);
    expect(await page.getByLabel('Skill credential: 1').count()).toBe(1);
    await page.getByRole('heading', { name: 'Key versions' }).waitFor();
    await page.getByText('KEK v1', { exact: true }).waitFor();
    const head = (await call('GET', '/v1/status', { token: ownerToken })).json.audit.seq;
    expect(Number(((await page.locator('.stat').filter({ hasText: 'Audit head' }).locator('.big').textContent()) ?? '').slice(1))).toBeLessThanOrEqual(head);
    await shot('status');
  });

  it('services: add one with a bearer rule, then edit it to a header rule', async () => {
    await nav('Services');
    await page.getByText('No services yet').waitFor();
    await page.getByRole('button', { name: 'Add service' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add service' });
    await dialog.getByLabel('Name').fill('openai');
    await dialog.getByLabel('Host').fill('api.openai.com');
    await dialog.getByLabel('Credential').fill('NOT_A_SECRET');
    await dialog.getByRole('checkbox', { name: 'POST' }).check();
    expect(await unlabelled()).toEqual([]);
    await dialog.getByRole('button', { name: 'Add service' }).click();
    await dialog.locator('.field-error').first().waitFor(); // the server names the field: the credential does not exist
    await dialog.getByLabel('Credential').fill('skill:openai:access_token');
    await shot('service-form');
    await dialog.getByRole('button', { name: 'Add service' }).click();
    await page.getByText('Added service openai.').waitFor();
    const row = page.getByRole('row', { name: /api\.openai\.com/ });
    expect(await row.textContent()).toContain('Bearer skill:openai:access_token');

    await row.getByRole('button', { name: 'Edit openai' }).click();
    const edit = page.getByRole('dialog', { name: 'Edit service openai' });
    await edit.getByLabel('Auth rule').selectOption('header');
    await edit.getByLabel('Header name').fill('Authorization');
    await edit.getByRole('textbox', { name: 'Prefix (optional)' }).fill('Bearer ');
    await edit.getByLabel('Credential').fill('skill:openai:access_token');
    await edit.getByRole('button', { name: 'Save service' }).click();
    await page.getByText('Saved service openai.').waitFor();
    await expect.poll(() => page.getByRole('row', { name: /api\.openai\.com/ }).textContent()).toContain('Authorization: Bearer skill:openai:access_token');
    await shot('services');
    const svc = (await call('GET', '/v1/vaults/default/services/openai', { token: ownerToken })).json;
    expect(svc).toMatchObject({ host: 'api.openai.com', methods: ['POST'], auth: { type: 'header', name: 'Authorization', key: 'skill:openai:access_token', prefix: 'Bearer ' } });
  });

  it('proposal round trip: the agent proposes, a person allows on the approval page with a value, the agent holds a use grant', async () => {
    const created = await call('POST', '/v1/vaults/default/proposals', {
      token: agentToken,
      body: {
        message: 'I need Stripe to refund the duplicate charges.',
        services: [{ name: 'stripe', host: upstreamHost, auth: { type: 'bearer', key: 'STRIPE_KEY' }, methods: ['GET', 'POST'] }],
        credentials: [{ action: 'set', key: 'STRIPE_KEY', description: 'Stripe API key', obtain: 'https://dashboard.stripe.com/apikeys', obtain_instructions: 'Developers > API Keys > Reveal test key' }],
      },
    });
    expect(created.status).toBe(201);
    expect(created.json.approval_url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/approve\?token=lk_appr_/);

    await page.goto(created.json.approval_url);
    await page.getByRole('heading', { name: 'Proposal from ci-bot' }).waitFor();
    await page.getByText('I need Stripe to refund the duplicate charges.').waitFor();
    expect(await page.locator('.svc-add').textContent()).toContain(upstreamHost);
    await page.getByRole('link', { name: 'https://dashboard.stripe.com/apikeys' }).waitFor();
    expect(await unlabelled()).toEqual([]);
    await shot('approval');

    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByText('Enter a value for STRIPE_KEY').waitFor(); // the browser asks before sending
    await page.getByLabel('Value for STRIPE_KEY').fill(STRIPE_VALUE);
    expect(await page.content()).not.toContain(STRIPE_VALUE);
    // Enter in the value field does not approve: only the Allow button does
    const sent = requests.length;
    await page.getByLabel('Value for STRIPE_KEY').press('Enter');
    await new Promise((r) => setTimeout(r, 300));
    expect(await page.locator('.page-header .st-approved').count()).toBe(0);
    expect(requests.slice(sent).filter((r) => r.startsWith('POST'))).toEqual([]);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByText(/^Allowed\. Set STRIPE_KEY/).waitFor();
    await page.locator('.page-header .st-approved').waitFor();
    await shot('approval-done');
    expect(await page.content()).not.toContain(STRIPE_VALUE);
    expect(requests.filter((r) => r.split(' ')[1]!.includes(STRIPE_VALUE))).toEqual([]);

    const grants = await call('GET', '/v1/vaults/default/grants', { token: agentToken });
    expect(grants.json.items).toEqual(expect.arrayContaining([expect.objectContaining({ service: 'stripe', mode: 'use', status: 'approved' })]));
    expect((await call('GET', '/v1/vaults/default/secrets/STRIPE_KEY/value', { token: ownerToken })).json.value).toBe(STRIPE_VALUE);
    expect((await call('GET', `/v1/vaults/default/proposals/${created.json.id}`, { token: ownerToken })).json.status).toBe('approved');

    // and the agent uses it through the base-URL proxy: the upstream gets the value typed on the approval page
    const res = await fetch(`${server.url}/proxy/default/stripe/v1/balance`, { headers: { authorization: `Bearer ${agentToken}` } });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ object: 'balance' });
    expect(text).not.toContain(STRIPE_VALUE);
    expect(upstreamSaw.at(-1)).toEqual({ url: '/v1/balance', authorization: `Bearer ${STRIPE_VALUE}` });
    expect(JSON.stringify(upstreamSaw)).not.toContain(agentToken);

    // the status page's activity chart counts the proxied request (audited in a batch after the response)
    await expect.poll(async () => (await call('GET', '/v1/audit?action=proxy.request', { token: ownerToken })).json.items.length).toBeGreaterThan(0);
    await nav('Status');
    await page.getByTestId('activity-chart').waitFor();
    await expect.poll(async () => page.locator('[data-testid="activity-chart"] rect.bar-proxied').count()).toBeGreaterThan(0);
    await shot('status-after-proxy');
  });

  it('a proposal that sends an existing credential to a new host warns; the person denies it', async () => {
    const created = await call('POST', '/v1/vaults/default/proposals', {
      token: agentToken,
      body: { message: 'Use the mirror', services: [{ name: 'openai-mirror', host: 'api.openai-mirror.example', auth: { type: 'bearer', key: 'skill:openai:access_token' } }] },
    });
    expect(created.status).toBe(201);

    // the link alone shows the proposal but cannot decide: a person logs in first
    const anon = await browser.newContext({ baseURL: server.url, viewport: { width: 1280, height: 860 } });
    const anonPage = await anon.newPage();
    await anonPage.goto(created.json.approval_url);
    await anonPage.getByRole('heading', { name: 'Proposal from ci-bot' }).waitFor();
    await anonPage.getByText('Log in to decide on this proposal.').waitFor();
    expect(await anonPage.getByRole('button', { name: 'Allow' }).count()).toBe(0);
    await anonPage.screenshot({ path: join(SHOTS, 'approval-logged-out.png'), fullPage: true });
    await anon.close();

    await nav('Proposals');
    const row = page.getByRole('row', { name: /Use the mirror/ });
    await row.waitFor();
    await shot('proposals');
    await row.getByRole('link', { name: 'Review' }).click();
    const warning = page.getByRole('alert').filter({ hasText: 'New hosts for existing credentials' });
    await warning.waitFor();
    expect(await warning.textContent()).toContain('api.openai-mirror.example');
    expect(await warning.textContent()).toContain('api.openai.com');
    await shot('proposal-warning');
    await page.getByRole('button', { name: 'Deny', exact: true }).click();
    await page.getByLabel('Reason for denying').fill('Not a host we trust');
    await page.getByRole('button', { name: 'Deny proposal' }).click();
    await page.getByText('Denied. Nothing was changed.').waitFor();
    const p = (await call('GET', `/v1/vaults/default/proposals/${created.json.id}`, { token: ownerToken })).json;
    expect(p).toMatchObject({ status: 'rejected', decision_reason: 'Not a host we trust' });
    expect((await call('GET', '/v1/vaults/default/services/openai-mirror', { token: ownerToken })).status).toBe(404);
  });

  it('members: add a person to the instance and the vault', async () => {
    await nav('Members');
    await page.getByRole('heading', { name: 'People of this instance' }).waitFor();
    await page.getByLabel('New person (email)').fill('dev@example.com');
    await page.getByRole('button', { name: 'Add person' }).click();
    const dialog = page.getByRole('dialog', { name: 'API token for dev@example.com' });
    expect(await dialog.getByTestId('once-token').textContent()).toMatch(/^lk_pat_/);
    await dialog.getByRole('button', { name: 'I have saved it' }).click();
    await page.getByLabel('Add a person (email)').fill('dev@example.com');
    await page.getByRole('button', { name: 'Add to vault' }).click();
    await page.getByText('Added dev@example.com as member.').waitFor();
    await expect.poll(() => page.getByRole('row', { name: /dev@example\.com.*person/ }).count()).toBe(1);
    expect(await page.getByRole('row', { name: /ci-bot.*agent.*proxy/ }).count()).toBe(1);
    expect(await unlabelled()).toEqual([]);
    await shot('members');
  });

  it('custom secret: a new version, history, rollback, and delete with typed confirmation', async () => {
    await nav('Secrets');
    await page.getByRole('button', { name: 'Add secret' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add secret' });
    await dialog.getByText('Custom', { exact: true }).click();
    await dialog.getByLabel('Name').fill('temp key');
    await dialog.getByLabel('Category').selectOption('api_key');
    await dialog.getByLabel('Value').fill('first-value-1');
    await dialog.getByRole('button', { name: 'Save secret' }).click();
    await dialog.getByText('Use UPPER_SNAKE_CASE').waitFor();
    await dialog.getByLabel('Name').fill('TEMP_KEY');
    await dialog.getByRole('button', { name: 'Save secret' }).click();
    await page.getByText('Created TEMP_KEY.').waitFor();
    expect(await page.getByRole('row', { name: /TEMP_KEY/ }).locator('.cat-api_key').textContent()).toBe('API key');

    await page.getByRole('link', { name: 'TEMP_KEY', exact: true }).click();
    await page.getByRole('button', { name: 'New version' }).click();
    await page.getByLabel('New value').fill('second-value-2');
    await page.getByRole('button', { name: 'Save new version' }).click();
    await page.getByText('Saved version 2.').waitFor();
    await page.getByRole('button', { name: 'Roll back to v1' }).click();
    await page.getByRole('dialog', { name: 'Roll back' }).getByRole('button', { name: 'Roll back to v1' }).click();
    await page.getByText('Version 3 now holds the value of version 1.').waitFor();
    await expect.poll(() => page.locator('section').filter({ hasText: 'History' }).locator('tbody tr').count()).toBe(3);
    expect((await call('GET', '/v1/vaults/default/secrets/TEMP_KEY/value', { token: ownerToken })).json).toMatchObject({ version: 3, value: 'first-value-1' });
    expect(await page.content()).not.toContain('first-value-1');
    await shot('secret-history');

    await page.getByRole('button', { name: 'Delete' }).click();
    const confirm = page.getByRole('dialog', { name: 'Delete secret' });
    const del = confirm.getByRole('button', { name: 'Delete permanently' });
    expect(await del.isDisabled()).toBe(true);
    await confirm.getByLabel('Type TEMP_KEY to confirm').fill('TEMP_KE');
    expect(await del.isDisabled()).toBe(true);
    await confirm.getByLabel('Type TEMP_KEY to confirm').fill('TEMP_KEY');
    await shot('secret-delete');
    await del.click();
    await page.getByRole('heading', { level: 1, name: 'Secrets' }).waitFor();
    expect((await call('GET', '/v1/vaults/default/secrets/TEMP_KEY', { token: ownerToken })).status).toBe(404);
  });

  it('an ended session goes back to login, and login resumes the page', async () => {
    await nav('Agents');
    await page.getByRole('row', { name: /ci-bot/ }).waitFor();
    await context.clearCookies();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    await page.getByText('Your session has ended').waitFor();
    await shot('session-ended');
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  });

  it('works at a narrow width without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const [path, name, heading] of [['/secrets', 'secrets-narrow', 'Secrets'], ['/access', 'access-narrow', 'Access requests'], ['/audit', 'audit-narrow', 'Audit log'], ['/status', 'status-narrow', 'Status']] as const) {
      await page.goto(path);
      await page.getByRole('heading', { name: heading, exact: true }).waitFor();
      await page.waitForLoadState('networkidle');
      await shot(name);
      const overflow = await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth - (globalThis as any).innerWidth);
      expect(overflow, path).toBeLessThanOrEqual(0);
    }
    await page.getByRole('heading', { name: 'Activity per hour' }).waitFor();
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  /** GET with the path exactly as given (fetch would normalise `..` away). */
  function rawGet(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const u = new URL(server.url);
      const req = httpRequest({ host: u.hostname, port: Number(u.port), path, method: 'GET' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('serves the console with a strict CSP, the SPA fallback, and API 404s untouched', async () => {
    const root = await call('GET', '/');
    expect(root.status).toBe(200);
    const csp = root.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).toMatch(/style-src 'self'(;|$)/);
    expect(csp).not.toContain('unsafe-inline');
    expect(root.headers.get('cache-control')).toBe('no-store');
    expect(root.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(root.text).not.toMatch(/<style|style=/);
    const deep = await call('GET', '/secrets/skill%3Aopenai%3Aaccess_token');
    expect(deep.status).toBe(200);
    expect(deep.headers.get('content-type')).toContain('text/html');
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(root.text)![1]!;
    const js = await call('GET', asset);
    expect(js.status).toBe(200);
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect((await call('GET', '/assets/nope.js')).status).toBe(404);
    // nothing outside the built console is reachable through /assets/ (raw `..` segments, sent as they are)
    for (const path of ['/assets/../../package.json', '/assets/..%2f..%2fpackage.json', '/assets/%2e%2e/%2e%2e/package.json']) {
      const r = await rawGet(path);
      expect([400, 403, 404], path).toContain(r.status);
      expect(r.body, path).not.toContain('"name": "latchkey"');
    }
    const api404 = await call('GET', '/v1/no-such-route', { token: ownerToken });
    expect(api404.status).toBe(404);
    expect(api404.headers.get('content-type')).toContain('application/problem+json');
  });

  it('no CSP violation and no script error happened in the browser', async () => {
    expect(cspViolations).toEqual([]);
    expect(problems).toEqual([]);
    expect(revealAt).toBeLessThan(Number.POSITIVE_INFINITY);
  });
});
