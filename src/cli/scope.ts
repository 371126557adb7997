/**
 * Which token the CLI holds and which vault a command means. A person's commands default to
 * --vault, then $LATCHKEY_VAULT, then `default`; a session token (lk_sess_) is scoped to one
 * vault, so without --vault or $LATCHKEY_VAULT its own vault is asked from the server.
 */
import type { Command } from 'commander';
import type { LatchkeyClient } from '../client/index.js';
import { readCliConfig, resolveToken } from './config.js';

export type TokenKind = 'user' | 'agent' | 'session' | 'none' | 'unknown';

/** The kind of the configured bearer token, from its prefix (never printed). */
export function tokenKind(token: string | null = resolveToken(process.env, readCliConfig())): TokenKind {
  if (!token) return 'none';
  if (token.startsWith('lk_agent_')) return 'agent';
  if (token.startsWith('lk_sess_')) return 'session';
  if (token.startsWith('lk_pat_')) return 'user';
  return 'unknown';
}

export const isAgentToken = (k: TokenKind = tokenKind()) => k === 'agent' || k === 'session';

/** The vault named explicitly (flag or $LATCHKEY_VAULT), if any. */
export function explicitVault(flag?: string): string | undefined {
  return flag || process.env.LATCHKEY_VAULT || undefined;
}

/** The vault a command acts on: explicit, else a session's own vault, else `default`. */
export async function vaultFor(client: LatchkeyClient, flag?: string): Promise<string> {
  const v = explicitVault(flag);
  if (v) return v;
  if (tokenKind() === 'session') {
    const me = await client.me();
    if (me.kind === 'agent' && typeof me.session_vault === 'string' && me.session_vault) return me.session_vault;
  }
  return 'default';
}

/** Adds the usual `--vault` option. */
export const withVault = (c: Command, what = 'vault'): Command =>
  c.option('--vault <name>', `${what} (default: $LATCHKEY_VAULT, a session's own vault, or default)`);
