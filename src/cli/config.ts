/**
 * The CLI's own config file: `{addr?, token?}` at $LATCHKEY_CONFIG, else <home>/config.json
 * (home = $LATCHKEY_HOME or ~/.latchkey). Always written with mode 0600, directories 0700.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DEFAULT_ADDR } from '../client/index.js';

export interface CliConfig {
  addr?: string;
  token?: string;
  /** per server address, the last audit checkpoint exported with -o (an absolute path): `audit verify` against that server checks against it */
  checkpoints?: Record<string, string>;
}

export function cliHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.LATCHKEY_HOME || join(homedir(), '.latchkey'));
}

export function cliConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.LATCHKEY_CONFIG ? resolve(env.LATCHKEY_CONFIG) : join(cliHome(env), 'config.json');
}

/** The saved config; {} when absent or unreadable (a broken file is not fatal for reading). */
export function readCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const path = cliConfigPath(env);
  if (!existsSync(path)) return {};
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (!j || typeof j !== 'object' || Array.isArray(j)) return {};
    const o = j as Record<string, unknown>;
    const out: CliConfig = {};
    if (typeof o.addr === 'string' && o.addr) out.addr = o.addr;
    if (typeof o.token === 'string' && o.token) out.token = o.token;
    if (o.checkpoints && typeof o.checkpoints === 'object' && !Array.isArray(o.checkpoints)) {
      out.checkpoints = Object.fromEntries(Object.entries(o.checkpoints as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
    }
    return out;
  } catch {
    return {};
  }
}

/**
 * Merges `patch` into the saved config (a key set to undefined or null is removed) and writes it
 * atomically with mode 0600. Returns the path written.
 */
export function writeCliConfig(patch: { addr?: string | null; token?: string | null; checkpoints?: Record<string, string> | null }, env: NodeJS.ProcessEnv = process.env): string {
  const path = cliConfigPath(env);
  let current: Record<string, unknown> = {};
  if (existsSync(path)) {
    try {
      const j = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      if (j && typeof j === 'object' && !Array.isArray(j)) current = j as Record<string, unknown>;
    } catch {
      current = {};
    }
  }
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined || v === null) delete current[k];
    else current[k] = v;
  }
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(current, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  chmodSync(path, 0o600);
  return path;
}

/** Where the CLI talks to: --addr, then $LATCHKEY_ADDR, then the saved addr, then the default. */
export function resolveAddr(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, config: CliConfig = readCliConfig(env)): string {
  return flag || env.LATCHKEY_ADDR || config.addr || DEFAULT_ADDR;
}

/** The bearer token: $LATCHKEY_TOKEN, then the saved one. */
export function resolveToken(env: NodeJS.ProcessEnv = process.env, config: CliConfig = readCliConfig(env)): string | null {
  return env.LATCHKEY_TOKEN || config.token || null;
}
