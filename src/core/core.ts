/**
 * Core: the domain with no transport. Holds the store, the keyring and the audit log, and offers
 * the two mechanisms everything else uses: `authorize` (the one policy, denials audited) and
 * `write` (one transaction for the change and its audit events; fail closed).
 */
import type { Keyring } from '../crypto/keyring.js';
import { TransactionConflict, type Store } from '../store/store.js';
import type { VaultRow } from '../store/store.js';
import { AuditLog, type AuditAction, type AuditInput } from './audit.js';
import { conflict, denied } from './errors.js';
import { decide, type Action, type VaultRole } from './policy.js';
import type { OpContext } from './principal.js';
import { Secrets } from './secrets.js';
import { Vaults } from './vaults.js';
import { Keys } from './keys.js';
import { Auth } from './auth.js';
import { Access } from './access.js';
import { Grants } from './grants.js';
import { Services } from './services.js';
import { Proposals } from './proposals.js';

export interface CoreInfo {
  home: string;
  masterSource: 'env' | 'file' | 'env-passphrase';
  version: string;
  startedAt: string;
}

/** The audit action a denied policy action is recorded under. */
const DENIAL_ACTION: Partial<Record<Action, AuditAction>> = {
  'secret.read': 'secret.read', 'secret.write': 'secret.update', 'secret.delete': 'secret.delete', 'secret.rotate': 'secret.rotate',
  'vault.rotate_all': 'vault.rotate_all', 'vault.create': 'vault.create', 'vault.delete': 'vault.delete', 'vault.update': 'vault.update',
  'key.manage': 'key.rotate', 'secret.vend': 'secret.vend', 'grant.request': 'grant.request', 'grant.decide': 'grant.approve',
  'grant.create': 'grant.approve', 'proposal.create': 'proposal.create', 'proposal.decide': 'proposal.approve', 'agent.create': 'agent.create',
  'agent.manage': 'agent.revoke', 'member.manage': 'member.add', 'service.manage': 'service.set', 'proxy.use': 'proxy.request',
};

export class Core {
  readonly audit: AuditLog;
  readonly secrets: Secrets;
  readonly vaults: Vaults;
  readonly keys: Keys;
  readonly auth: Auth;
  readonly access: Access;
  readonly grants: Grants;
  readonly services: Services;
  readonly proposals: Proposals;

  constructor(readonly store: Store, readonly keyring: Keyring, readonly info: CoreInfo) {
    this.audit = new AuditLog(keyring);
    this.secrets = new Secrets(this);
    this.vaults = new Vaults(this);
    this.keys = new Keys(this);
    this.auth = new Auth(this);
    this.access = new Access(this);
    this.grants = new Grants(this);
    this.services = new Services(this);
    this.proposals = new Proposals(this);
  }

  /**
   * One transaction: fn makes its changes through `s` and pushes audit events onto `events`;
   * the events are chained and inserted before commit. If anything fails, nothing is written.
   */
  async write<T>(ctx: OpContext, fn: (s: Store, events: AuditInput[]) => Promise<T>): Promise<T> {
    let written: Awaited<ReturnType<AuditLog['append']>> = [];
    let out: T;
    try {
      out = await this.store.tx(async (s) => {
        const events: AuditInput[] = [];
        const r = await fn(s, events);
        written = await this.audit.append(s, ctx, events);
        return r;
      });
    } catch (err) {
      if (err instanceof TransactionConflict) throw conflict('a concurrent change got in the way; nothing was written, retry', 'concurrent_update');
      throw err;
    }
    this.audit.emit(written);
    return out;
  }

  private pending: Array<{ ctx: OpContext; input: AuditInput; resolve: () => void; reject: (e: unknown) => void }> = [];
  private flushing: Promise<void> | null = null;

  /**
   * Records an event for an operation that changes nothing (a read, a vend, a proxied request)
   * and resolves once it is committed. Concurrent callers share one transaction (group commit):
   * nobody is answered before their event is durable, and if the batch fails, every caller fails.
   */
  record(ctx: OpContext, input: AuditInput): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ ctx, input, resolve, reject });
      if (!this.flushing) this.flushing = this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    while (this.pending.length) {
      const batch = this.pending.splice(0, 1000);
      try {
        const rows = await this.audit.appendEntries(this.store, batch);
        for (const b of batch) b.resolve();
        this.audit.emit(rows);
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.flushing = null;
  }

  /** The principal's role in a vault: people by membership, agents `proxy` when added (and, with a session, only in its vault). */
  async vaultRole(ctx: OpContext, vault: VaultRow | null): Promise<VaultRole> {
    if (!vault) return null;
    const p = ctx.principal;
    if (p.kind === 'user') return (await this.store.getMemberRole(vault.id, 'user', p.id)) as VaultRole;
    if (p.kind === 'agent') {
      if (p.sessionVault && p.sessionVault !== vault.name) return null;
      return (await this.store.getMemberRole(vault.id, 'agent', p.id)) ? 'proxy' : null;
    }
    return null;
  }

  /** True when the policy admits the action (no audit, no throw): for filtering lists. */
  async can(ctx: OpContext, action: Action, vault: VaultRow | null = null): Promise<boolean> {
    return decide(ctx.principal, action, await this.vaultRole(ctx, vault)).allow;
  }

  /** The one authorization check. A denial is audited (outcome `denied`) and raised as 403. */
  async authorize(ctx: OpContext, action: Action, vault: VaultRow | null = null, target: string | null = null): Promise<void> {
    // instance owners and admins need no membership lookup
    const p = ctx.principal;
    const role = p.kind === 'user' && (p.role === 'owner' || p.role === 'admin') ? null : await this.vaultRole(ctx, vault);
    const d = decide(p, action, role);
    if (d.allow) return;
    const auditAction = DENIAL_ACTION[action] ?? 'auth.failure';
    await this.write(ctx, async (_s, ev) => {
      ev.push({ action: auditAction, vault: vault?.name ?? null, target, outcome: 'denied', details: { attempted: action, reason: d.reason } });
    });
    throw denied(`not allowed (${action}): ${d.reason}`);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
