/** Vaults: the unit of isolation, with an optional ordered fallback chain (seed 004's tiers). */
import { newId } from '../crypto/tokens.js';
import type { VaultRow } from '../store/store.js';
import { UniqueViolation } from '../store/store.js';
import type { Core } from './core.js';
import { conflict, invalid, notFound } from './errors.js';
import { checkVaultName, LIMITS } from './names.js';
import type { OpContext } from './principal.js';

export interface VaultView {
  name: string;
  description: string | null;
  fallback: string[];
  passthrough: boolean;
  secrets?: number;
  created_at: string;
  updated_at: string;
}

export function parseFallback(v: VaultRow): string[] {
  try {
    const a = JSON.parse(v.fallback);
    return Array.isArray(a) ? a.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

export function vaultView(v: VaultRow, secrets?: number): VaultView {
  return {
    name: v.name, description: v.description, fallback: parseFallback(v), passthrough: v.passthrough === 1,
    ...(secrets === undefined ? {} : { secrets }), created_at: v.created_at, updated_at: v.updated_at,
  };
}

export interface VaultInput {
  name?: unknown;
  description?: unknown;
  fallback?: unknown;
  passthrough?: unknown;
}

export class Vaults {
  constructor(private readonly core: Core) {}

  /** The vault of that name, or 404 (naming the request `field` that held the name, when given). */
  async require(name: string, field?: string): Promise<VaultRow> {
    const v = await this.core.store.getVault(name);
    if (!v) throw notFound('vault', name, undefined, field);
    return v;
  }

  async list(ctx: OpContext): Promise<VaultView[]> {
    await this.core.authorize(ctx, 'vault.list');
    return (await this.visible(ctx)).map((r) => vaultView(r, r.secret_count));
  }

  /** The vaults the principal may see: every one for the system and instance admins, else those it is in. */
  async visible(ctx: OpContext) {
    const rows = await this.core.store.listVaults();
    const p = ctx.principal;
    if (p.kind === 'system' || (p.kind === 'user' && (p.role === 'owner' || p.role === 'admin'))) return rows;
    const out: typeof rows = [];
    for (const r of rows) if (await this.core.vaultRole(ctx, r)) out.push(r);
    return out;
  }

  private async checkFallback(ctx: OpContext, self: string, value: unknown): Promise<string[]> {
    if (value === undefined) return [];
    if (!Array.isArray(value)) throw invalid('fallback', 'must be an array of vault names');
    if (value.length > LIMITS.fallbackDepth) throw invalid('fallback', `may name at most ${LIMITS.fallbackDepth} vaults`);
    const seen = new Set<string>();
    for (const [i, n] of value.entries()) {
      checkVaultName(n, `fallback[${i}]`);
      if (n === self) throw invalid(`fallback[${i}]`, 'a vault cannot fall back to itself');
      if (seen.has(n)) throw invalid(`fallback[${i}]`, 'is named twice');
      seen.add(n);
      const fb = await this.core.store.getVault(n);
      if (!fb) throw invalid(`fallback[${i}]`, `vault '${n}' does not exist`);
      // falling back to a vault exposes its secrets to this one's readers: only its admins may chain it
      await this.core.authorize(ctx, 'vault.update', fb, n);
    }
    return value as string[];
  }

  private checkDescription(d: unknown): string | null {
    if (d === undefined || d === null) return null;
    if (typeof d !== 'string') throw invalid('description', 'must be a string');
    if (d.length > LIMITS.description) throw invalid('description', `is longer than ${LIMITS.description} characters`);
    return d;
  }

  async create(ctx: OpContext, input: VaultInput): Promise<VaultView> {
    const name = checkVaultName(input.name);
    await this.core.authorize(ctx, 'vault.create', null, name);
    const fallback = await this.checkFallback(ctx, name, input.fallback);
    const description = this.checkDescription(input.description);
    if (input.passthrough !== undefined && typeof input.passthrough !== 'boolean') throw invalid('passthrough', 'must be true or false');
    const now = new Date().toISOString();
    const row: VaultRow = { id: newId(), name, description, fallback: JSON.stringify(fallback), passthrough: input.passthrough ? 1 : 0, created_at: now, updated_at: now };
    try {
      await this.core.write(ctx, async (s, ev) => {
        await s.insertVault(row);
        ev.push({ action: 'vault.create', vault: name, target: name, details: { fallback } });
        if (ctx.principal.kind === 'user') {
          await s.upsertMember({ vault_id: row.id, kind: 'user', member_id: ctx.principal.id, role: 'admin', created_at: now });
        }
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`vault '${name}' already exists`, 'vault_exists', 'name');
      throw err;
    }
    return vaultView(row, 0);
  }

  async update(ctx: OpContext, name: string, input: VaultInput): Promise<VaultView> {
    const v = await this.require(name);
    await this.core.authorize(ctx, 'vault.update', v, name);
    const patch: Partial<VaultRow> = { updated_at: new Date().toISOString() };
    if (input.fallback !== undefined) patch.fallback = JSON.stringify(await this.checkFallback(ctx, name, input.fallback));
    if (input.description !== undefined) patch.description = this.checkDescription(input.description);
    if (input.passthrough !== undefined) {
      if (typeof input.passthrough !== 'boolean') throw invalid('passthrough', 'must be true or false');
      patch.passthrough = input.passthrough ? 1 : 0;
    }
    await this.core.write(ctx, async (s, ev) => {
      await s.updateVault(v.id, patch);
      ev.push({ action: 'vault.update', vault: name, target: name, details: { fields: Object.keys(patch).filter((k) => k !== 'updated_at') } });
      // a shorter chain may leave grants on names that no longer resolve here
      if (patch.fallback !== undefined && patch.fallback !== v.fallback) await this.core.secrets.revokeUnresolved(s, ctx, { ...v, ...patch } as VaultRow, 'fallback chain changed', ev);
    });
    return vaultView({ ...v, ...patch } as VaultRow);
  }

  /**
   * Deletes a vault with its secrets. With `expectSecrets`, only if it holds exactly that many when
   * the deletion runs (the count a person confirmed): else 409 `vault_changed` and nothing is deleted.
   */
  async delete(ctx: OpContext, name: string, expectSecrets?: number): Promise<{ deleted: string; secrets: number }> {
    const v = await this.require(name);
    await this.core.authorize(ctx, 'vault.delete', v, name);
    const users = (await this.core.store.listVaults()).filter((o) => o.id !== v.id && parseFallback(o).includes(name));
    if (users.length) throw conflict(`vault '${name}' is in the fallback chain of ${users.map((u) => `'${u.name}'`).join(', ')}; remove it there first`, 'vault_in_use');
    return this.core.write(ctx, async (s, ev) => {
      const { secrets, deleted } = await s.deleteVault(v.id);
      if (!deleted) throw notFound('vault', name);
      // counted by the deletion itself, under the vault's lock: rolled back whole when it differs
      if (expectSecrets !== undefined && secrets !== expectSecrets) {
        throw conflict(`vault '${name}' holds ${secrets} secret${secrets === 1 ? '' : 's'}, not the ${expectSecrets} expected; nothing was deleted`, 'vault_changed');
      }
      ev.push({ action: 'vault.delete', vault: name, target: name, details: { secrets } });
      return { deleted: name, secrets };
    });
  }
}
