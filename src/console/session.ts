/** The signed-in person and the vault the console is looking at. */
import { createContext, useContext } from 'react';
import type { Me, Vault } from './api';

export interface Session {
  me: Me;
  vault: string;
  vaults: Vault[];
  setVault: (name: string) => void;
  reloadVaults: () => void;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside a signed-in page');
  return s;
}

/** People who manage the instance (owner, admin). Vault admins are allowed more by the server; the UI only hides nothing it cannot know. */
export function isInstanceAdmin(s: Session): boolean {
  return s.me.role === 'owner' || s.me.role === 'admin';
}
