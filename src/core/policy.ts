/**
 * The one authorization function. Every route and every core operation asks `decide` and nothing
 * else; an action without a rule, or a principal no rule admits, is denied. Pure: no I/O, no
 * framework; the facts it needs (the principal and its role in the vault at hand) are passed in.
 *
 * Per SPEC §3: instance roles owner | admin | member; vault roles admin | member for people and
 * proxy for agents. Members may read values; only admins manage members and agents. Agents may
 * list names, raise proposals and access requests, and use or read nothing without a grant (the
 * grant itself is checked by core after the policy admits the attempt).
 */
import type { InstanceRole, Principal } from './principal.js';

export type VaultRole = 'admin' | 'member' | 'proxy' | null;

interface Rule {
  /** instance roles that may do this anywhere */
  instance?: InstanceRole[];
  /** vault roles (people) that may do this in their vault */
  vault?: Array<'admin' | 'member'>;
  /** agents with the proxy role in the vault */
  agentInVault?: boolean;
  /** any agent, no vault involved (discovery, its own status) */
  anyAgent?: boolean;
  /** any person */
  anyUser?: boolean;
}

const ADMINS: InstanceRole[] = ['owner', 'admin'];
const OWNER: InstanceRole[] = ['owner'];

export const RULES = {
  'self.read': { anyUser: true, anyAgent: true },
  'status.read': { anyUser: true },
  /** a person's own API tokens; an agent is authenticated but not a person: 403 */
  'token.manage': { anyUser: true },
  /** a person's own email, password and session (PATCH /v1/auth/me, logout) */
  'self.manage': { anyUser: true },
  'session.end': { anyAgent: true },
  'vault.list': { anyUser: true, anyAgent: true },
  'vault.create': { anyUser: true },
  'vault.update': { instance: ADMINS, vault: ['admin'] },
  'vault.delete': { instance: ADMINS, vault: ['admin'] },
  'vault.rotate_all': { instance: ADMINS, vault: ['admin'] },
  'secret.list': { instance: ADMINS, vault: ['admin', 'member'], agentInVault: true },
  'secret.meta': { instance: ADMINS, vault: ['admin', 'member'] },
  'secret.read': { instance: ADMINS, vault: ['admin', 'member'] },
  'secret.write': { instance: ADMINS, vault: ['admin', 'member'] },
  'secret.rotate': { instance: ADMINS, vault: ['admin', 'member'] },
  'secret.delete': { instance: ADMINS, vault: ['admin'] },
  'secret.vend': { agentInVault: true },
  'audit.read': { instance: ADMINS, vault: ['admin'] },
  'audit.verify': { instance: ADMINS },
  'audit.prune': { instance: OWNER },
  'key.read': { instance: ADMINS },
  'key.manage': { instance: OWNER },
  'user.list': { instance: ADMINS },
  'user.manage': { instance: ADMINS },
  'member.list': { instance: ADMINS, vault: ['admin', 'member'] },
  'member.manage': { instance: ADMINS, vault: ['admin'] },
  'agent.list': { instance: ADMINS, vault: ['admin'] },
  'agent.create': { instance: ADMINS, vault: ['admin'] },
  'agent.manage': { instance: ADMINS, vault: ['admin'] },
  'session.create': { instance: ADMINS, vault: ['admin'], agentInVault: true },
  'grant.list': { instance: ADMINS, vault: ['admin', 'member'], agentInVault: true },
  'grant.request': { agentInVault: true },
  'grant.create': { instance: ADMINS, vault: ['admin'] },
  'grant.decide': { instance: ADMINS, vault: ['admin'] },
  'service.list': { instance: ADMINS, vault: ['admin', 'member'], agentInVault: true },
  'service.manage': { instance: ADMINS, vault: ['admin'] },
  'proposal.create': { agentInVault: true },
  'proposal.list': { instance: ADMINS, vault: ['admin', 'member'], agentInVault: true },
  'proposal.decide': { instance: ADMINS, vault: ['admin'] },
  'proxy.use': { agentInVault: true },
  'discover': { anyAgent: true },
} satisfies Record<string, Rule>;

export type Action = keyof typeof RULES;

export interface Decision {
  allow: boolean;
  reason: string;
}

const allow = (reason: string): Decision => ({ allow: true, reason });
const deny = (reason: string): Decision => ({ allow: false, reason });

export function decide(p: Principal, action: Action, vaultRole: VaultRole = null): Decision {
  const rule: Rule | undefined = (RULES as Record<string, Rule>)[action];
  if (!rule) return deny('no rule admits this action');
  switch (p.kind) {
    case 'anonymous':
      return deny('authentication required');
    case 'system':
      return allow('system');
    case 'agent':
      if (rule.anyAgent) return allow('any agent');
      if (rule.agentInVault && vaultRole === 'proxy') return allow('agent with the proxy role in this vault');
      return deny(rule.agentInVault ? 'the agent is not a member of this vault' : 'agents may not do this; ask a person');
    case 'user':
      if (rule.anyUser) return allow('any person');
      if (rule.instance?.includes(p.role)) return allow(`instance ${p.role}`);
      if (vaultRole && vaultRole !== 'proxy' && rule.vault?.includes(vaultRole)) return allow(`vault ${vaultRole}`);
      if (rule.vault) return deny(`needs the vault role ${rule.vault.join(' or ')}${rule.instance ? ` or the instance role ${rule.instance.join(' or ')}` : ''}`);
      return deny(rule.instance?.length ? `needs the instance role ${rule.instance.join(' or ')}` : 'only agents do this');
  }
}
