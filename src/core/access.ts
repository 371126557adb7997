/**
 * People, vault membership, agents and agent sessions. Every operation asks the one policy
 * (core.authorize) and writes its audit event in the same transaction (core.write).
 */
import { newId } from '../crypto/tokens.js';
import type { AgentRow, MemberRow, UserRow, VaultRow } from '../store/store.js';
import { UniqueViolation } from '../store/store.js';
import { checkEmail, checkPassword, userView } from './auth.js';
import type { Core } from './core.js';
import { conflict, denied, invalid, notFound } from './errors.js';
import type { InstanceRole, OpContext } from './principal.js';
import { actorOf } from './principal.js';

const INSTANCE_ROLES = ['owner', 'admin', 'member'] as const;
const VAULT_ROLES = ['admin', 'member'] as const;
const AGENT_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
export const SESSION_TTL = { min: 300, max: 7 * 86400, default: 3600 } as const;

export function agentView(a: AgentRow, vaults?: string[]) {
  return { name: a.name, status: a.status, description: a.description, created_by: a.created_by, created_at: a.created_at, revoked_at: a.revoked_at, ...(vaults ? { vaults } : {}) };
}

function checkAgentName(n: unknown): string {
  if (typeof n !== 'string' || !AGENT_NAME_RE.test(n)) throw invalid('name', 'must be 1-63 lower-case letters, digits, . _ -');
  return n;
}

export class Access {
  constructor(private readonly core: Core) {}

  // ---- people

  async listUsers(ctx: OpContext) {
    await this.core.authorize(ctx, 'user.list');
    return (await this.core.store.listUsers()).filter((u) => !u.disabled).map(userView);
  }

  async createUser(ctx: OpContext, input: { email?: unknown; password?: unknown; role?: unknown }) {
    await this.core.authorize(ctx, 'user.manage');
    const email = checkEmail(input.email);
    const role = (input.role ?? 'member') as InstanceRole;
    if (!INSTANCE_ROLES.includes(role)) throw invalid('role', `must be one of ${INSTANCE_ROLES.join(', ')}`);
    if (role === 'owner' && !(ctx.principal.kind === 'user' && ctx.principal.role === 'owner')) throw invalid('role', 'only an owner may make another owner');
    const password = input.password === undefined ? null : checkPassword(input.password);
    try {
      return await this.core.write(ctx, async (s, ev) => {
        const { user, token } = await this.core.auth.createUser(s, { email, password, role, tokenName: `created by ${actorOf(ctx.principal)}` });
        ev.push({ action: 'member.add', target: `user:${email}`, details: { role, scope: 'instance' } });
        return { ...userView(user), token };
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`a person with email ${email} exists`, 'user_exists', 'email');
      throw err;
    }
  }

  private async requireUser(email: string): Promise<UserRow> {
    const u = await this.core.store.getUserByEmail(email.toLowerCase());
    if (!u) throw notFound('user', email);
    return u;
  }

  /** Changes a person's instance role; the last owner can be neither demoted nor removed. */
  async setUserRole(ctx: OpContext, email: string, role: unknown) {
    await this.core.authorize(ctx, 'user.manage');
    if (!INSTANCE_ROLES.includes(role as InstanceRole)) throw invalid('role', `must be one of ${INSTANCE_ROLES.join(', ')}`);
    const u = await this.requireUser(email);
    const isOwner = ctx.principal.kind === 'user' && ctx.principal.role === 'owner';
    if ((role === 'owner' || u.role === 'owner') && !isOwner) throw invalid('role', 'only an owner may grant or take the owner role');
    return this.core.write(ctx, async (s, ev) => {
      if (u.role === 'owner' && role !== 'owner' && (await s.countActiveOwners()) <= 1) throw conflict('the last owner cannot be demoted; make someone else owner first', 'last_owner');
      await s.updateUser(u.id, { role: role as string, updated_at: new Date().toISOString() });
      ev.push({ action: 'member.add', target: `user:${u.email}`, details: { role, scope: 'instance', previous: u.role } });
      return userView({ ...u, role: role as string });
    });
  }

  async removeUser(ctx: OpContext, email: string) {
    await this.core.authorize(ctx, 'user.manage');
    const u = await this.requireUser(email);
    if (u.role === 'owner' && !(ctx.principal.kind === 'user' && ctx.principal.role === 'owner')) throw invalid('email', 'only an owner may remove an owner');
    return this.core.write(ctx, async (s, ev) => {
      if (u.role === 'owner' && (await s.countActiveOwners()) <= 1) throw conflict('the last owner cannot be removed', 'last_owner');
      await s.updateUser(u.id, { disabled: 1, updated_at: new Date().toISOString() });
      await s.revokeTokensOf({ userId: u.id }, new Date().toISOString());
      ev.push({ action: 'member.remove', target: `user:${u.email}`, details: { scope: 'instance' } });
      return { removed: u.email };
    });
  }

  // ---- vault membership (people and agents)

  async listMembers(ctx: OpContext, vaultName: string) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'member.list', vault);
    const rows = await this.core.store.listMembers(vault.id);
    const out: Array<{ kind: string; email?: string | null; name?: string; role: string; added_at: string }> = [];
    for (const r of rows) {
      if (r.kind === 'user') {
        const u = await this.core.store.getUser(r.member_id);
        if (u && !u.disabled) out.push({ kind: 'user', email: u.email, role: r.role, added_at: r.created_at });
      } else {
        const a = await this.core.store.getAgent(r.member_id);
        if (a) out.push({ kind: 'agent', name: a.name, role: r.role, added_at: r.created_at });
      }
    }
    return out;
  }

  async addMember(ctx: OpContext, vaultName: string, input: { email?: unknown; role?: unknown }) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'member.manage', vault);
    const email = checkEmail(input.email);
    const role = input.role ?? 'member';
    if (!VAULT_ROLES.includes(role as 'admin')) throw invalid('role', `must be one of ${VAULT_ROLES.join(', ')} (agents are added with the proxy role through the vault's agents)`);
    const u = await this.requireUser(email);
    return this.core.write(ctx, async (s, ev) => {
      await s.upsertMember({ vault_id: vault.id, kind: 'user', member_id: u.id, role: role as string, created_at: new Date().toISOString() });
      ev.push({ action: 'member.add', vault: vault.name, target: `user:${u.email}`, details: { role } });
      return { kind: 'user', email: u.email, role };
    });
  }

  async removeMember(ctx: OpContext, vaultName: string, email: string) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'member.manage', vault);
    const u = await this.requireUser(email);
    return this.core.write(ctx, async (s, ev) => {
      if (!(await s.deleteMember(vault.id, 'user', u.id))) throw notFound('member', email);
      ev.push({ action: 'member.remove', vault: vault.name, target: `user:${u.email}` });
      return { removed: u.email, vault: vault.name };
    });
  }

  // ---- agents

  async requireAgent(name: string): Promise<AgentRow> {
    const a = await this.core.store.getAgentByName(name);
    if (!a) throw notFound('agent', name);
    return a;
  }

  /** An agent that is not revoked: a revoked agent is kept for the record and takes nothing new. */
  async requireActiveAgent(name: string, field?: string): Promise<AgentRow> {
    const a = await this.requireAgent(name);
    if (a.status !== 'active') throw conflict(`agent ${a.name} is revoked`, 'agent_revoked', field);
    return a;
  }

  private async agentVaults(a: AgentRow): Promise<string[]> {
    const ms = await this.core.store.listMemberships('agent', a.id);
    const names: string[] = [];
    for (const m of ms) {
      const v = await this.core.store.getVaultById(m.vault_id);
      if (v) names.push(v.name);
    }
    return names.sort();
  }

  /** Creates an agent, adds it (role proxy) to the given vaults, and returns its token once. */
  async createAgent(ctx: OpContext, input: { name?: unknown; vaults?: unknown; description?: unknown }) {
    const name = checkAgentName(input.name);
    const vaultNames = input.vaults === undefined ? [] : input.vaults;
    if (!Array.isArray(vaultNames) || vaultNames.some((v) => typeof v !== 'string')) throw invalid('vaults', 'must be an array of vault names');
    const twice = (vaultNames as string[]).findIndex((v, i) => vaultNames.indexOf(v) !== i);
    if (twice !== -1) throw invalid(`vaults[${twice}]`, `names vault ${vaultNames[twice]} a second time`);
    const vaults: VaultRow[] = [];
    for (const [i, v] of (vaultNames as string[]).entries()) vaults.push(await this.core.vaults.require(v, `vaults[${i}]`));
    if (vaults.length === 0) await this.core.authorize(ctx, 'agent.create', null, name);
    for (const v of vaults) await this.core.authorize(ctx, 'agent.create', v, name);
    if (input.description !== undefined && (typeof input.description !== 'string' || input.description.length > 1024)) throw invalid('description', 'must be a string of at most 1024 characters');
    const now = new Date().toISOString();
    const row: AgentRow = { id: newId(), name, status: 'active', description: (input.description as string | undefined) ?? null, created_by: actorOf(ctx.principal), created_at: now, revoked_at: null };
    try {
      return await this.core.write(ctx, async (s, ev) => {
        await s.insertAgent(row);
        const { token } = await this.core.auth.issueToken(s, 'agent', { name: 'agent token', agent_id: row.id });
        for (const v of vaults) await s.upsertMember({ vault_id: v.id, kind: 'agent', member_id: row.id, role: 'proxy', created_at: now });
        ev.push({ action: 'agent.create', target: `agent:${name}`, details: { vaults: vaults.map((v) => v.name) } });
        for (const v of vaults) ev.push({ action: 'member.add', vault: v.name, target: `agent:${name}`, details: { role: 'proxy' } });
        return { ...agentView(row, vaults.map((v) => v.name)), token };
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`an agent named ${name} exists`, 'agent_exists', 'name');
      throw err;
    }
  }

  async listAgents(ctx: OpContext) {
    const p = ctx.principal;
    const all = p.kind === 'system' || (p.kind === 'user' && (p.role === 'owner' || p.role === 'admin'));
    if (!all) {
      // vault admins see the agents of their vaults
      if (p.kind !== 'user') await this.core.authorize(ctx, 'agent.list');
    }
    const out = [];
    for (const a of await this.core.store.listAgents()) {
      const vaults = await this.agentVaults(a);
      if (!all) {
        let visible = false;
        for (const vn of vaults) {
          const v = await this.core.store.getVault(vn);
          if (v && (await this.core.can(ctx, 'agent.list', v))) visible = true;
        }
        if (!visible) continue;
      }
      out.push(agentView(a, vaults));
    }
    return out;
  }

  /**
   * May the caller act on this agent everywhere (revoke it, rotate its token)? Instance admins, or
   * a person who administers every vault the agent is in. A vault is the unit of isolation: the
   * admin of one vault must not cut off, or take over with a fresh token, an agent that other
   * vaults rely on (its token reaches all of them).
   */
  private async authorizeAgent(ctx: OpContext, a: AgentRow, memberships?: MemberRow[]): Promise<void> {
    const vaults = memberships ?? (await this.core.store.listMemberships('agent', a.id));
    let everyVault = vaults.length > 0;
    for (const m of vaults) {
      const v = await this.core.store.getVaultById(m.vault_id);
      if (!v || !(await this.core.can(ctx, 'agent.manage', v))) {
        everyVault = false;
        break;
      }
    }
    if (everyVault) return;
    await this.core.authorize(ctx, 'agent.manage', null, `agent:${a.name}`);
  }

  /** Revokes the agent: every token and session stops working on the next request. */
  async revokeAgent(ctx: OpContext, name: string) {
    const a = await this.requireAgent(name);
    await this.authorizeAgent(ctx, a);
    if (a.status !== 'active') throw conflict(`agent ${name} is already revoked`, 'agent_revoked');
    const now = new Date().toISOString();
    return this.core.write(ctx, async (s, ev) => {
      await s.updateAgent(a.id, { status: 'revoked', revoked_at: now });
      const tokens = await s.revokeTokensOf({ agentId: a.id }, now);
      ev.push({ action: 'agent.revoke', target: `agent:${a.name}`, details: { tokens } });
      return { revoked: a.name, tokens };
    });
  }

  async rotateAgentToken(ctx: OpContext, name: string) {
    const a = await this.requireAgent(name);
    await this.authorizeAgent(ctx, a);
    if (a.status !== 'active') throw conflict(`agent ${name} is revoked`, 'agent_revoked');
    const now = new Date().toISOString();
    return this.core.write(ctx, async (s, ev) => {
      await s.revokeTokensOf({ agentId: a.id, kind: 'agent' }, now);
      const { token } = await this.core.auth.issueToken(s, 'agent', { name: 'agent token', agent_id: a.id });
      ev.push({ action: 'agent.rotate_token', target: `agent:${a.name}` });
      return { name: a.name, token };
    });
  }

  async listVaultAgents(ctx: OpContext, vaultName: string) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'member.list', vault);
    return (await this.listMembers(ctx, vaultName)).filter((m) => m.kind === 'agent');
  }

  async addVaultAgent(ctx: OpContext, vaultName: string, agentName: unknown) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'agent.manage', vault);
    const a = await this.requireActiveAgent(checkAgentName(agentName), 'name');
    // an agent that other vaults already rely on joins one more only by someone who manages it in
    // all of them: else a vault admin could adopt another team's agent (and then act on it)
    const memberships = await this.core.store.listMemberships('agent', a.id);
    if (memberships.some((m) => m.vault_id !== vault.id)) await this.authorizeAgent(ctx, a, memberships);
    return this.core.write(ctx, async (s, ev) => {
      await s.upsertMember({ vault_id: vault.id, kind: 'agent', member_id: a.id, role: 'proxy', created_at: new Date().toISOString() });
      ev.push({ action: 'member.add', vault: vault.name, target: `agent:${a.name}`, details: { role: 'proxy' } });
      return { kind: 'agent', name: a.name, role: 'proxy', vault: vault.name };
    });
  }

  async removeVaultAgent(ctx: OpContext, vaultName: string, agentName: string) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'agent.manage', vault);
    const a = await this.requireAgent(agentName);
    return this.core.write(ctx, async (s, ev) => {
      if (!(await s.deleteMember(vault.id, 'agent', a.id))) throw notFound('member', `agent:${agentName}`);
      ev.push({ action: 'member.remove', vault: vault.name, target: `agent:${a.name}` });
      // an agent added back later starts with no grants here
      const revoked = await this.core.grants.revokeIn(s, ctx, vault, { agentId: a.id }, 'agent removed from the vault', ev);
      return { removed: a.name, vault: vault.name, revoked_grants: revoked };
    });
  }

  /**
   * A short-lived session scoped to one vault: minted by the agent for itself, or by a person
   * (vault admin) for a named agent. TTL 5 minutes to 7 days.
   */
  async createSession(ctx: OpContext, input: { vault?: unknown; ttl?: unknown; agent?: unknown }) {
    if (typeof input.vault !== 'string') throw invalid('vault', 'is required');
    const vault = await this.core.vaults.require(input.vault);
    // seconds, or a duration as the CLI and grant expiries take it (`10m`, `1h`, `7d`)
    const dur = typeof input.ttl === 'string' ? /^(\d{1,7})([smhd])$/.exec(input.ttl) : null;
    const ttl = input.ttl === undefined ? SESSION_TTL.default : dur ? Number(dur[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[dur[2] as 's'] : input.ttl;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < SESSION_TTL.min || ttl > SESSION_TTL.max) {
      throw invalid('ttl', `must be between ${SESSION_TTL.min} and ${SESSION_TTL.max} seconds (a number, or a duration like 10m, 1h, 7d)`);
    }
    const p = ctx.principal;
    let agent: AgentRow;
    if (p.kind === 'agent') {
      if (p.sessionVault) throw denied('a session cannot mint another session; use the agent token');
      if (input.agent !== undefined && input.agent !== p.name) throw invalid('agent', 'an agent mints sessions only for itself');
      agent = await this.requireAgent(p.name);
    } else {
      if (typeof input.agent !== 'string') throw invalid('agent', 'is required when a person mints a session');
      agent = await this.requireActiveAgent(input.agent, 'agent');
    }
    await this.core.authorize(ctx, 'session.create', vault, `agent:${agent.name}`);
    if (!(await this.core.store.getMemberRole(vault.id, 'agent', agent.id))) throw invalid('vault', `agent ${agent.name} is not a member of vault ${vault.name}`);
    const expires_at = new Date(Date.now() + ttl * 1000).toISOString();
    return this.core.write(ctx, async (s, ev) => {
      const { token, row } = await this.core.auth.issueToken(s, 'sess', { name: `session (${vault.name})`, agent_id: agent.id, vault_id: vault.id, expires_at });
      // a credential that acts as the agent: recorded like every other token made
      ev.push({ action: 'token.create', vault: vault.name, target: `agent:${agent.name}`, details: { kind: 'session', token: row.id, expires_at } });
      return { token, id: row.id, agent: agent.name, vault: vault.name, expires_at };
    });
  }
}
