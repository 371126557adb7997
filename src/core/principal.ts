/** Who is acting, and the request facts every audited operation carries. */

export type InstanceRole = 'owner' | 'admin' | 'member';

export type Principal =
  | { kind: 'user'; id: string; email: string | null; role: InstanceRole; tokenId: string | null }
  | { kind: 'agent'; id: string; name: string; tokenId: string; sessionVault: string | null }
  | { kind: 'system' }
  | { kind: 'anonymous' };

export interface OpContext {
  principal: Principal;
  ip: string | null;
  requestId: string | null;
}

export function actorOf(p: Principal): string {
  switch (p.kind) {
    case 'user':
      return `user:${p.email ?? 'owner'}`;
    case 'agent':
      return `agent:${p.name}`;
    default:
      // SPEC's three actors: what no principal did (an unauthenticated caller's refusal) the
      // server records as `system`, and the event's details say `caller: anonymous`
      return 'system';
  }
}

export const systemContext = (): OpContext => ({ principal: { kind: 'system' }, ip: null, requestId: null });
