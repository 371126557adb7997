/**
 * Proposals (seed 002, SPEC §3): an agent proposes services and credential slots in one go; a
 * person opens the approval link, fills in the values the agent cannot know and approves; the
 * approval applies every change in ONE transaction, exactly once (two racing approvals, even on
 * two replicas, apply it once: the pending -> approved transition is the first statement of the
 * transaction and the loser finds the row no longer pending).
 *
 * - Only agents propose (policy `proposal.create`); only people decide (`proposal.decide`), so
 *   the proposing agent can never approve its own proposal.
 * - Agent-supplied values are sealed under the keyring (AAD bound to vault and proposal id) in
 *   `sealed_values`; they never appear in a JSON column, a view, an error or an audit row.
 * - The approval token (`lk_appr_`) is stored only as its keyed hash; the link is read-only and
 *   valid for 24 h; a proposal expires 7 days after it was made (a pending one past that reads as
 *   `expired`).
 */
import { SECRET_NAME_RE } from './names.js';
import { mintToken, newId, tokenKind } from '../crypto/tokens.js';
import { blobKekVersion } from '../crypto/keyring.js';
import { PROPOSAL_SEAL_PURPOSE } from './keys.js';
import type { GrantRow, ProposalRow, ServiceRow, VaultRow } from '../store/store.js';
import { UniqueViolation } from '../store/store.js';
import type { Core } from './core.js';
import { conflict, denied, invalid, LatchkeyError, notFound } from './errors.js';
import { credentialKeys, credentialRefs, parseHostMatcher, parseServiceSpec, type ServiceConfig } from './matching.js';
import { checkSecretName, checkValue, LIMITS } from './names.js';
import type { OpContext } from './principal.js';
import { actorOf } from './principal.js';
import { changedFields, serviceFromRow } from './services.js';

/**
 * Limits on one proposal. They bound what an agent can make a person review (and what one request
 * can make the server seal): 20 services and 50 credential slots, a 4000-character message, slot
 * descriptions of 1024 and instructions of 4000 characters, `obtain` URLs of 2048, values of
 * 64 KiB each (the secret value limit), and at least one service or slot.
 */
export const PROPOSAL_LIMITS = {
  services: 20,
  credentials: 50,
  message: 4000,
  description: LIMITS.description,
  instructions: 4000,
  obtainUrl: 2048,
  valueBytes: LIMITS.valueBytes,
  reason: 1000,
  approvalTtlMs: 24 * 3600_000,
  ttlMs: 7 * 24 * 3600_000,
} as const;

export const PROPOSAL_STATES = ['pending', 'approved', 'rejected', 'expired'] as const;
export type ProposalState = (typeof PROPOSAL_STATES)[number];

const NEW_HOST_WARNING = 'an existing credential would be sent to a host it was not sent to before';

/** A credential slot as stored (the value, if any, is sealed apart). */
export interface Slot {
  action: 'set' | 'delete';
  key: string;
  description: string | null;
  obtain: string | null;
  obtain_instructions: string | null;
  has_value: boolean;
}

export interface ProposalInput {
  message?: unknown;
  services?: unknown;
  credentials?: unknown;
}

const expiredConflict = (p: Pick<ProposalRow, 'id' | 'expires_at'>) => conflict(`proposal ${p.id} expired at ${p.expires_at}; ask the agent to propose again`, 'proposal_expired');

export function proposalState(p: Pick<ProposalRow, 'status' | 'expires_at'>, now = new Date().toISOString()): ProposalState {
  if (p.status === 'pending' && p.expires_at <= now) return 'expired';
  return p.status as ProposalState;
}

function optText(v: unknown, field: string, max: number): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw invalid(field, 'must be a string');
  if (v.length > max) throw invalid(field, `is longer than ${max} characters`);
  return v;
}

function checkObtain(v: unknown, field: string): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string' || v.length > PROPOSAL_LIMITS.obtainUrl) throw invalid(field, `must be an https URL of at most ${PROPOSAL_LIMITS.obtainUrl} characters`);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw invalid(field, 'must be an https URL');
  }
  if (u.protocol !== 'https:') throw invalid(field, 'must be an https URL');
  if (u.username || u.password) throw invalid(field, 'must not carry a user name or password');
  return u.toString();
}

function parseJson<T>(t: string, fallback: T): T {
  try {
    return JSON.parse(t) as T;
  } catch {
    return fallback;
  }
}

const SLOT_FIELDS = ['action', 'key', 'description', 'obtain', 'obtain_instructions', 'value'];

export class Proposals {
  constructor(private readonly core: Core) {}

  /**
   * Marks pending proposals past their expiry `expired` and drops the sealed values of every
   * decided one (run by the server at start and periodically); returns how many it expired.
   */
  expireDue(now = new Date(), s = this.core.store): Promise<number> {
    return s.sweepProposals(now.toISOString());
  }

  // ---- create

  async create(ctx: OpContext, vaultName: string, input: ProposalInput) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'proposal.create', vault);
    const p = ctx.principal;
    if (p.kind !== 'agent') throw denied('only agents raise proposals; people change services and credentials directly');
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalid('body', 'must be an object');
    for (const k of Object.keys(input)) if (!['message', 'services', 'credentials'].includes(k)) throw invalid(k, 'is not a known field');
    const message = optText(input.message, 'message', PROPOSAL_LIMITS.message);

    // services
    const rawServices = input.services ?? [];
    if (!Array.isArray(rawServices)) throw invalid('services', 'must be an array of service specs');
    if (rawServices.length > PROPOSAL_LIMITS.services) throw invalid('services', `may hold at most ${PROPOSAL_LIMITS.services} services`);
    const services: ServiceConfig[] = rawServices.map((s, i) => parseServiceSpec(s, { prefix: `services[${i}]` }));
    services.forEach((s, i) => {
      if (services.findIndex((o) => o.name === s.name) !== i) throw invalid(`services[${i}].name`, `service '${s.name}' is proposed twice`);
    });

    // credential slots
    const rawSlots = input.credentials ?? [];
    if (!Array.isArray(rawSlots)) throw invalid('credentials', 'must be an array of credential slots');
    if (rawSlots.length > PROPOSAL_LIMITS.credentials) throw invalid('credentials', `may hold at most ${PROPOSAL_LIMITS.credentials} slots`);
    const slots: Slot[] = [];
    const values: Record<string, string> = {};
    rawSlots.forEach((raw, i) => {
      const f = `credentials[${i}]`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(f, 'must be an object');
      const o = raw as Record<string, unknown>;
      for (const k of Object.keys(o)) if (!SLOT_FIELDS.includes(k)) throw invalid(`${f}.${k}`, 'is not a known field');
      if (o.action !== 'set' && o.action !== 'delete') throw invalid(`${f}.action`, 'must be set or delete');
      const key = checkSecretName(o.key, `${f}.key`);
      if (slots.some((s) => s.key === key)) throw invalid(`${f}.key`, `credential '${key}' has two slots`);
      let hasValue = false;
      if (o.value !== undefined && o.value !== null) {
        if (o.action === 'delete') throw invalid(`${f}.value`, 'a delete slot takes no value');
        values[key] = checkValue(o.value, `${f}.value`);
        hasValue = true;
      }
      slots.push({
        action: o.action, key,
        description: optText(o.description, `${f}.description`, PROPOSAL_LIMITS.description),
        obtain: checkObtain(o.obtain, `${f}.obtain`),
        obtain_instructions: optText(o.obtain_instructions, `${f}.obtain_instructions`, PROPOSAL_LIMITS.instructions),
        has_value: hasValue,
      });
    });
    if (services.length === 0 && slots.length === 0) throw invalid('services', 'a proposal needs at least one service or credential slot');

    // every delete slot names a credential of this vault; every key a service needs exists or is a set slot
    for (const [i, s] of slots.entries()) {
      if (s.action === 'delete' && !(await this.core.store.getSecret(vault.id, s.key))) {
        throw invalid(`credentials[${i}].key`, `credential '${s.key}' does not exist in vault '${vault.name}'`, 'credential_not_found');
      }
    }
    const setKeys = new Set(slots.filter((s) => s.action === 'set').map((s) => s.key));
    const deleteKeys = new Set(slots.filter((s) => s.action === 'delete').map((s) => s.key));
    for (const [i, svc] of services.entries()) {
      for (const ref of credentialRefs(svc.auth, `services[${i}].auth`)) {
        if (deleteKeys.has(ref.key)) throw invalid(ref.field, `credential '${ref.key}' is deleted by this same proposal`);
      }
      await this.core.services.checkCredentials(vault, svc, { allowMissing: setKeys, prefix: `services[${i}]` });
    }

    const id = newId();
    const token = mintToken('appr');
    const now = Date.now();
    let sealed: Buffer | null = null;
    if (Object.keys(values).length) {
      const plain = Buffer.from(JSON.stringify(values), 'utf8');
      try {
        sealed = this.core.keyring.sealBlob(PROPOSAL_SEAL_PURPOSE, vault.id, id, plain);
      } finally {
        plain.fill(0);
      }
    }
    const row: ProposalRow = {
      id, vault_id: vault.id, agent_id: p.id, status: 'pending', message, services: JSON.stringify(services), credentials: JSON.stringify(slots),
      sealed_values: sealed, approval_hash: this.core.keyring.tokenHash(token), approval_expires_at: new Date(now + PROPOSAL_LIMITS.approvalTtlMs).toISOString(),
      expires_at: new Date(now + PROPOSAL_LIMITS.ttlMs).toISOString(), created_at: new Date(now).toISOString(), decided_by: null, decided_at: null, decision_reason: null,
    };
    try {
      await this.core.write(ctx, async (s, ev) => {
        await s.insertProposal(row);
        ev.push({
          action: 'proposal.create', vault: vault.name, target: id,
          details: { agent: p.name, services: services.map((x) => x.name), credentials: slots.map((x) => ({ action: x.action, key: x.key, has_value: x.has_value })) },
        });
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict('the proposal could not be stored; retry', 'concurrent_update');
      throw err;
    }
    return {
      id, vault: vault.name, status: 'pending' as const, approval_url: `/approve?token=${token}`,
      approval_expires_at: row.approval_expires_at, expires_at: row.expires_at,
    };
  }

  // ---- read

  private async agentName(id: string, cache?: Map<string, string | null>): Promise<string | null> {
    if (cache?.has(id)) return cache.get(id)!;
    const name = (await this.core.store.getAgent(id))?.name ?? null;
    cache?.set(id, name);
    return name;
  }

  summary(p: ProposalRow, vault: VaultRow, agent: string | null, now = new Date().toISOString()) {
    const services = parseJson<ServiceConfig[]>(p.services, []);
    const slots = parseJson<Slot[]>(p.credentials, []);
    return {
      id: p.id, vault: vault.name, status: proposalState(p, now), agent, message: p.message,
      services: services.map((s) => s.name), credentials: slots.map((s) => ({ action: s.action, key: s.key })),
      created_at: p.created_at, expires_at: p.expires_at, approval_expires_at: p.approval_expires_at,
      decided_by: p.decided_by, decided_at: p.decided_at, decision_reason: p.decision_reason,
    };
  }

  /**
   * The full view a person reviews: each service with its diff against the current one of that
   * name, each slot (whether a value is still missing), and warnings when an existing credential
   * would be sent to a new host. Never a value: agent-supplied ones show as `has_value: true`.
   */
  async view(p: ProposalRow, vault: VaultRow) {
    const now = new Date().toISOString();
    const proposed = parseJson<ServiceConfig[]>(p.services, []);
    const slots = parseJson<Slot[]>(p.credentials, []);
    const current = await this.core.store.listServices(vault.id);
    const byName = new Map(current.map((r) => [r.name, serviceFromRow(r)]));

    const resolved = new Map<string, { vault: VaultRow } | null>();
    const resolve = async (key: string) => {
      if (!resolved.has(key)) resolved.set(key, await this.core.secrets.resolve(vault, key));
      return resolved.get(key)!;
    };

    const services = [];
    for (const s of proposed) {
      const cur = byName.get(s.name);
      const changed = cur ? changedFields(cur, s) : [];
      services.push({
        ...s, change: !cur ? 'add' : changed.length ? 'update' : 'unchanged',
        ...(cur && changed.length ? { changes: Object.fromEntries(changed.map((k) => [k, { from: cur[k], to: s[k] }])) } : {}),
      });
    }

    const credentials = [];
    for (const s of slots) {
      const exists = !!(await resolve(s.key));
      credentials.push({
        action: s.action, key: s.key, description: s.description, obtain: s.obtain, obtain_instructions: s.obtain_instructions,
        has_value: s.has_value, exists, ...(s.action === 'set' ? { missing_value: !s.has_value && !exists } : {}),
      });
    }

    // an existing credential sent to a host none of its current services sends it to
    const warnings = [];
    const servicesOf = new Map<string, ServiceRow[]>([[vault.id, current]]);
    for (const s of proposed) {
      const newHost = parseHostMatcher(s.host).host;
      for (const key of credentialKeys(s.auth)) {
        const found = await resolve(key);
        if (!found) continue;
        const pools = [vault.id, ...(found.vault.id !== vault.id ? [found.vault.id] : [])];
        const users: ServiceConfig[] = [];
        for (const vid of pools) {
          if (!servicesOf.has(vid)) servicesOf.set(vid, await this.core.store.listServices(vid));
          for (const r of servicesOf.get(vid)!) {
            const c = serviceFromRow(r);
            if (credentialKeys(c.auth).includes(key)) users.push(c);
          }
        }
        if (users.some((c) => parseHostMatcher(c.host).host === newHost)) continue;
        warnings.push({ service: s.name, credential: key, new_host: s.host, current_hosts: [...new Set(users.map((c) => c.host))], message: NEW_HOST_WARNING });
      }
    }

    return {
      ...this.summary(p, vault, await this.agentName(p.agent_id), now),
      services, credentials, warnings,
    };
  }

  private async requireIn(vault: VaultRow, id: string): Promise<ProposalRow> {
    const p = await this.core.store.getProposal(id);
    if (!p || p.vault_id !== vault.id) throw notFound('proposal', id);
    return p;
  }

  /** People with proposal.list see every proposal of the vault; an agent only its own. */
  async get(ctx: OpContext, vaultName: string, id: string) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'proposal.list', vault, id);
    const p = await this.requireIn(vault, id);
    if (ctx.principal.kind === 'agent' && p.agent_id !== ctx.principal.id) throw notFound('proposal', id);
    return this.view(p, vault);
  }

  async list(ctx: OpContext, vaultName: string, filter: { status?: string } = {}) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'proposal.list', vault);
    if (filter.status !== undefined && !(PROPOSAL_STATES as readonly string[]).includes(filter.status)) throw invalid('status', `must be one of ${PROPOSAL_STATES.join(', ')}`);
    const p = ctx.principal;
    const agentId = p.kind === 'agent' ? p.id : undefined;
    // pending rows past their expiry read as expired, so those two states are filtered after reading
    const dbStatus = filter.status === 'approved' || filter.status === 'rejected' ? filter.status : undefined;
    const rows = await this.core.store.listProposals({ vaultId: vault.id, agentId, status: dbStatus });
    const now = new Date().toISOString();
    const names = new Map<string, string | null>();
    const out = [];
    for (const r of rows) {
      if (filter.status && proposalState(r, now) !== filter.status) continue;
      out.push(this.summary(r, vault, await this.agentName(r.agent_id, names), now));
    }
    return out;
  }

  /** The approval page's read: the token is the only credential; it shows, it never approves. */
  async getByApprovalToken(token: unknown) {
    const gone = new LatchkeyError(404, 'proposal_not_found', 'no proposal has this approval link');
    if (typeof token !== 'string' || tokenKind(token) !== 'appr') throw gone;
    const p = await this.core.store.getProposalByApprovalHash(this.core.keyring.tokenHash(token));
    if (!p) throw gone;
    if (p.approval_expires_at <= new Date().toISOString()) {
      throw new LatchkeyError(410, 'approval_link_expired', `the approval link expired at ${p.approval_expires_at}; open proposal ${p.id} from the console's Proposals page instead`);
    }
    const vault = await this.core.store.getVaultById(p.vault_id);
    if (!vault) throw gone;
    return this.view(p, vault);
  }

  // ---- decide

  /** Pending and not expired, else 409 (an expired one is marked expired on the way). */
  private async requirePending(p: ProposalRow): Promise<void> {
    const state = proposalState(p);
    if (state === 'expired') {
      if (p.status === 'pending') await this.core.store.transitionProposal(p.id, { status: 'expired' });
      throw expiredConflict(p);
    }
    if (state !== 'pending') throw conflict(`proposal ${p.id} is already ${state}`, 'proposal_decided');
  }

  private async agentValues(p: ProposalRow): Promise<Record<string, string>> {
    if (!p.sealed_values || p.sealed_values.length === 0) return {};
    if (!this.core.keyring.hasKek(blobKekVersion(p.sealed_values))) await this.core.keys.refresh();
    const plain = this.core.keyring.openBlob(PROPOSAL_SEAL_PURPOSE, p.vault_id, p.id, p.sealed_values);
    try {
      return JSON.parse(plain.toString('utf8')) as Record<string, string>;
    } finally {
      plain.fill(0);
    }
  }

  /**
   * A person approves, supplying values (theirs override the agent's). In one transaction: the
   * pending -> approved transition (first, so a racing approval loses with 409), every slot,
   * every service, and `use` grants on the proposed services for the proposing agent.
   */
  async approve(ctx: OpContext, vaultName: string, id: string, input: { credentials?: unknown } = {}) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'proposal.decide', vault, id);
    const who = ctx.principal;
    if (who.kind !== 'user') throw denied('only a person can approve a proposal');
    const p = await this.requireIn(vault, id);
    await this.requirePending(p);

    const slots = parseJson<Slot[]>(p.credentials, []);
    const proposed = parseJson<unknown[]>(p.services, []).map((s, i) => parseServiceSpec(s, { prefix: `services[${i}]` }));
    const setSlots = new Map(slots.filter((s) => s.action === 'set').map((s) => [s.key, s]));

    // the person's values: only for this proposal's set slots, each a valid value
    const given = input.credentials ?? {};
    if (typeof given !== 'object' || given === null || Array.isArray(given)) throw invalid('credentials', 'must be an object of KEY: value');
    const entries = Object.entries(given as Record<string, unknown>);
    if (entries.length > PROPOSAL_LIMITS.credentials) throw invalid('credentials', `may hold at most ${PROPOSAL_LIMITS.credentials} values`);
    const personal: Record<string, string> = {};
    for (const [key, v] of entries) {
      if (!setSlots.has(key)) {
        // never echo a key that is not a valid name: it may be a value pasted in the wrong place
        const field = SECRET_NAME_RE.test(key) && key.length <= 128 ? `credentials.${key}` : 'credentials';
        throw invalid(field, field === 'credentials' ? 'holds a key that is not a credential name of this proposal' : 'is not a set slot of this proposal');
      }
      personal[key] = checkValue(v, `credentials.${key}`);
    }
    const values = new Map<string, string>(Object.entries({ ...(await this.agentValues(p)), ...personal }));

    // every set slot ends with a value or an existing secret; every service's credentials resolve
    for (const key of setSlots.keys()) {
      if (!values.has(key) && !(await this.core.secrets.resolve(vault, key))) {
        throw invalid(`credentials.${key}`, `needs a value: credential '${key}' does not exist yet and the agent supplied none`, 'value_required');
      }
    }
    for (const [i, svc] of proposed.entries()) {
      try {
        await this.core.services.checkCredentials(vault, svc, { allowMissing: new Set(setSlots.keys()), prefix: `services[${i}]` });
      } catch (err) {
        if (err instanceof LatchkeyError && err.code === 'credential_not_found') throw new LatchkeyError(409, 'credential_not_found', `${err.message} (it was removed after the proposal was made)`, err.field);
        throw err;
      }
    }

    const now = new Date().toISOString();
    const by = actorOf(who);
    const agent = await this.core.store.getAgent(p.agent_id);
    try {
      const applied = await this.core.write(ctx, async (s, ev) => {
        // the expiry again, inside the transaction: it may have passed since the checks above
        if (proposalState(p) === 'expired') throw expiredConflict(p);
        if (!(await s.transitionProposal(id, { status: 'approved', decided_by: by, decided_at: now }))) {
          const cur = await s.getProposal(id);
          throw conflict(`proposal ${id} is already ${cur ? proposalState(cur) : 'gone'}`, 'proposal_decided');
        }
        ev.push({
          action: 'proposal.approve', vault: vault.name, target: id,
          details: {
            agent: agent?.name ?? null, services: proposed.map((x) => x.name),
            credentials: slots.map((x) => ({ action: x.action, key: x.key, value_from: values.has(x.key) ? (x.key in personal ? 'person' : 'agent') : x.action === 'set' ? 'existing' : null })),
          },
        });
        const out = { secrets_set: [] as string[], secrets_deleted: [] as string[], services: [] as string[], grants: [] as string[] };
        // in name order, as rotate-all locks secrets: two writers taking rows in opposite orders deadlock
        for (const slot of [...slots].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
          if (slot.action === 'set') {
            const v = values.get(slot.key);
            if (v === undefined) continue; // an existing secret stays as it is
            await this.core.secrets.putIn(s, ctx, vault, slot.key, v, ev, { description: slot.description, details: { proposal: id }, field: `credentials.${slot.key}` });
            out.secrets_set.push(slot.key);
          } else if (await this.core.secrets.deleteIn(s, ctx, vault, slot.key, ev, { proposal: id })) out.secrets_deleted.push(slot.key);
        }
        for (const svc of proposed) {
          await this.core.services.setIn(s, vault, svc, ev, { details: { proposal: id } });
          out.services.push(svc.name);
        }
        for (const svc of proposed) {
          if (await s.findActiveGrant(vault.id, p.agent_id, 'service', svc.name, ['use'], now)) continue;
          const g: GrantRow = {
            id: newId(), vault_id: vault.id, agent_id: p.agent_id, kind: 'service', target: svc.name, mode: 'use', status: 'approved',
            reason: `proposal ${id}`, requested_by: agent ? `agent:${agent.name}` : 'agent',
            decided_by: by, decided_at: now, decision_reason: null, expires_at: null, created_at: now,
          };
          await s.insertGrant(g);
          ev.push({ action: 'grant.approve', vault: vault.name, target: `service:${svc.name}`, details: { grant: g.id, mode: 'use', agent: agent?.name ?? null, proposal: id } });
          out.grants.push(g.id);
        }
        return out;
      });
      const fresh = await this.requireIn(vault, id);
      return { ...this.summary(fresh, vault, agent?.name ?? null), applied };
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`a credential or service of proposal ${id} was changed concurrently; retry`, 'concurrent_update');
      throw err;
    }
  }

  async reject(ctx: OpContext, vaultName: string, id: string, input: { reason?: unknown } = {}) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'proposal.decide', vault, id);
    const who = ctx.principal;
    if (who.kind !== 'user') throw denied('only a person can reject a proposal');
    const reason = optText(input.reason, 'reason', PROPOSAL_LIMITS.reason);
    const p = await this.requireIn(vault, id);
    await this.requirePending(p);
    const now = new Date().toISOString();
    const by = actorOf(who);
    const agent = await this.agentName(p.agent_id);
    await this.core.write(ctx, async (s, ev) => {
      if (!(await s.transitionProposal(id, { status: 'rejected', decided_by: by, decided_at: now, decision_reason: reason }))) {
        const cur = await s.getProposal(id);
        throw conflict(`proposal ${id} is already ${cur ? proposalState(cur) : 'gone'}`, 'proposal_decided');
      }
      ev.push({ action: 'proposal.reject', vault: vault.name, target: id, details: { agent, ...(reason ? { reason } : {}) } });
    });
    return this.summary({ ...p, status: 'rejected', decided_by: by, decided_at: now, decision_reason: reason }, vault, agent);
  }
}
