/**
 * The one authorization function. Every route and every core operation asks `decide` and nothing
 * else; anything not listed here is denied. Pure: no I/O, no framework; the facts it needs
 * (the principal, the vault role) are passed in.
 */
import type { Principal } from './principal.js';

export type Action =
  | 'status.read' | 'self.read'
  | 'vault.list' | 'vault.create' | 'vault.update' | 'vault.delete'
  | 'secret.list' | 'secret.meta' | 'secret.write' | 'secret.read' | 'secret.delete' | 'secret.rotate' | 'vault.rotate_all'
  | 'audit.read' | 'audit.verify' | 'audit.prune'
  | 'key.read' | 'key.manage';

export type VaultRole = 'admin' | 'member' | 'proxy' | null;

export interface Decision {
  allow: boolean;
  reason: string;
}

const allow = (reason: string): Decision => ({ allow: true, reason });
const deny = (reason: string): Decision => ({ allow: false, reason });

/** Actions on a vault's contents and what vault role each needs (for people without an instance role that covers it). */
const VAULT_ACTIONS: Partial<Record<Action, Array<Exclude<VaultRole, null>>>> = {
  'secret.list': ['admin', 'member'],
  'secret.meta': ['admin', 'member'],
  'secret.read': ['admin', 'member'],
  'secret.write': ['admin', 'member'],
  'secret.rotate': ['admin', 'member'],
  'secret.delete': ['admin'],
  'vault.rotate_all': ['admin'],
  'vault.update': ['admin'],
  'vault.delete': ['admin'],
};

export function decide(p: Principal, action: Action, vaultRole: VaultRole = null): Decision {
  if (p.kind === 'anonymous') return deny('authentication required');
  if (p.kind === 'system') return allow('system');
  if (action === 'self.read') return allow('anyone may ask who they are');
  if (p.kind === 'agent') return deny('agents use credentials through grants, not the management API');
  // people
  if (p.role === 'owner') return allow('instance owner');
  if (p.role === 'admin') {
    if (action === 'key.manage' || action === 'audit.prune') return deny('only the instance owner manages keys and audit retention');
    return allow('instance admin');
  }
  switch (action) {
    case 'status.read':
    case 'vault.list':
      return allow('members see the instance status and their vaults');
    case 'vault.create':
      return allow('members may create vaults (they become its admin)');
    case 'audit.read':
      return vaultRole === 'admin' ? allow('vault admin reads its vault audit') : deny('reading the audit log needs an admin role');
    default: {
      const roles = VAULT_ACTIONS[action];
      if (roles && vaultRole && (roles as string[]).includes(vaultRole)) return allow(`vault ${vaultRole}`);
      return deny(roles ? `needs vault role ${roles.join(' or ')}` : 'not permitted');
    }
  }
}
