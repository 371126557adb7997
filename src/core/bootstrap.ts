/**
 * Opening the data: find the master key, check it against the sentinel BEFORE anything is written,
 * migrate, load the keyring. Also first-time initialisation and offline rekey.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  defaultKdfParams, findMasterKeySource, generateMasterKey, masterKeyPath, MasterKeyError, missingKeyMessage, parseRawKey,
  stretchPassphrase, wrongKeyMessage, writeKeyFile, MIN_PASSPHRASE, type KdfParams, type MasterKeySource,
} from '../crypto/master.js';
import { checkSentinel, Keyring, makeSentinel, newKeyringRows, type KeyPurpose } from '../crypto/keyring.js';
import { newId } from '../crypto/tokens.js';
import { openStore, sqlitePathFor, type KyselyStore } from '../store/index.js';
import { UniqueViolation } from '../store/store.js';
import { jsonLinesSink } from './audit.js';
import { Core, type CoreInfo } from './core.js';
import { StartupError } from './errors.js';
import { systemContext } from './principal.js';
import { packageVersion } from '../package.js';

export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.LATCHKEY_HOME || join(homedir(), '.latchkey'));
}

export interface OpenOptions {
  home: string;
  databaseUrl?: string;
  env?: NodeJS.ProcessEnv;
  /** initialise an empty data dir/database (server start); otherwise an empty one is an error */
  allowInit?: boolean;
  /** owner email and password for initialisation (init --email); absent: the owner sets them in the console */
  owner?: { email: string | null; password: string | null };
  auditFile?: string;
  poolSize?: number;
}

export interface Opened {
  core: Core;
  /** present when this call initialised the data: the owner's API token, shown once */
  initialized: { ownerToken: string; keyFile: string | null } | null;
}

async function masterFrom(source: MasterKeySource, kdf: KdfParams | null): Promise<Buffer> {
  if (source.kind === 'raw') return source.key;
  if (!kdf) throw new StartupError(wrongKeyMessage('LATCHKEY_MASTER_KEY (a passphrase, but this data was sealed with a raw 32-byte key)'));
  return stretchPassphrase(source.passphrase, kdf);
}

function originOf(source: MasterKeySource): CoreInfo['masterSource'] {
  return source.kind === 'passphrase' ? 'env-passphrase' : source.origin;
}

function describeOrigin(source: MasterKeySource): string {
  return source.origin === 'env' ? 'LATCHKEY_MASTER_KEY' : (source as { path?: string }).path ?? 'the key file';
}

async function openStoreFor(opts: OpenOptions): Promise<KyselyStore> {
  const url = opts.databaseUrl || undefined;
  if (!url) mkdirSync(opts.home, { recursive: true, mode: 0o700 });
  return openStore({ databaseUrl: url, sqlitePath: sqlitePathFor(opts.home), poolSize: opts.poolSize });
}

/** A rekey that committed but crashed before moving master.key.new into place: finish the move. */
function recoverPendingKeyFile(path: string, sentinel: Buffer): Buffer | null {
  const pending = `${path}.new`;
  if (!existsSync(pending)) return null;
  const key = parseRawKey(readFileSync(pending, 'utf8'));
  if (!key || !checkSentinel(key, sentinel)) return null;
  renameSync(pending, path);
  return key;
}

function findSource(opts: OpenOptions): MasterKeySource | null {
  try {
    return findMasterKeySource(opts.home, opts.env ?? process.env);
  } catch (err) {
    if (err instanceof MasterKeyError) throw new StartupError(err.message);
    throw err;
  }
}

async function loadKeyring(store: KyselyStore, master: Buffer): Promise<Keyring> {
  const kr = new Keyring(master);
  const rows = await store.listKeys();
  kr.load(rows.map((r) => ({ ...r, purpose: r.purpose as KeyPurpose })));
  return kr;
}

/**
 * Opens (and with allowInit, initialises) the data. A wrong key is refused before any write;
 * a missing key says what to provide.
 */
export async function openCore(opts: OpenOptions): Promise<Opened> {
  const store = await openStoreFor(opts);
  try {
    const info = (source: MasterKeySource): CoreInfo => ({ home: opts.home, masterSource: originOf(source), version: packageVersion(), startedAt: new Date().toISOString() });
    const hasSchema = await store.initialized();
    const sentinel = hasSchema ? await store.getMeta('sentinel') : null;
    if (!sentinel && hasSchema && (await store.listKeys()).length) {
      // keys without the sentinel that vouches for them: damaged, never initialised over
      throw new StartupError(`the data at ${opts.databaseUrl ? store.location : opts.home} is damaged: its master-key sentinel is missing while sealed keys exist (altered by hand?). Restore the database from a backup; nothing was written`);
    }
    if (sentinel) {
      const source = findSource(opts);
      if (!source) throw new StartupError(missingKeyMessage(opts.home));
      const kdfText = await store.getMeta('kdf');
      let master = await masterFrom(source, kdfText ? JSON.parse(kdfText) : null);
      if (!checkSentinel(master, Buffer.from(sentinel, 'base64'))) {
        const recovered = source.kind === 'raw' && source.origin === 'file' ? recoverPendingKeyFile(source.path!, Buffer.from(sentinel, 'base64')) : null;
        if (!recovered) throw new StartupError(wrongKeyMessage(describeOrigin(source)));
        master = recovered;
      }
      await store.migrate();
      const core = new Core(store, await loadKeyring(store, master), info(source));
      if (opts.auditFile) core.audit.addSink(jsonLinesSink(opts.auditFile));
      return { core, initialized: null };
    }
    if (!opts.allowInit) throw new StartupError(`Latchkey is not initialised at ${opts.databaseUrl ? store.location : opts.home}: run \`latchkey init\` (or \`latchkey server\`, which initialises an empty data dir)`);
    return await initialise(store, opts, info);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

async function initialise(store: KyselyStore, opts: OpenOptions, info: (s: MasterKeySource) => CoreInfo): Promise<Opened> {
  let source = findSource(opts);
  let keyFile: string | null = null;
  if (!source) {
    const key = generateMasterKey();
    keyFile = masterKeyPath(opts.home);
    mkdirSync(opts.home, { recursive: true, mode: 0o700 });
    try {
      writeKeyFile(keyFile, key, { exclusive: true });
    } catch (err) {
      // another process initialising this data dir at the same moment made its key first: nothing
      // is written here, and starting again uses that key
      if ((err as { code?: string }).code === 'EEXIST') throw new StartupError(`another process created ${keyFile} while this one was initialising; nothing was written: start again`);
      throw err;
    }
    source = { kind: 'raw', origin: 'file', key, path: keyFile };
  }
  const kdf = source.kind === 'passphrase' ? defaultKdfParams() : null;
  const master = kdf ? await stretchPassphrase((source as { passphrase: string }).passphrase, kdf) : (source as { key: Buffer }).key;
  await store.migrate();
  const rows = newKeyringRows(master);
  const keyring = new Keyring(master);
  keyring.load(rows);
  const core = new Core(store, keyring, info(source));
  if (opts.auditFile) core.audit.addSink(jsonLinesSink(opts.auditFile));
  const now = new Date().toISOString();
  const ctx = systemContext();
  let ownerToken: string;
  try {
    ownerToken = await core.write(ctx, async (s, ev) => {
      await s.setMeta('created_at', now);
      if (kdf) await s.setMeta('kdf', JSON.stringify(kdf));
      for (const r of rows) await s.insertKey(r);
      await s.insertVault({ id: newId(), name: 'default', description: 'created by init', fallback: '[]', passthrough: 0, created_at: now, updated_at: now });
      ev.push({ action: 'vault.create', vault: 'default', target: 'default', details: { by: 'init' } });
      const { user, token } = await core.auth.createUser(s, { email: opts.owner?.email ?? null, password: opts.owner?.password ?? null, role: 'owner', tokenName: 'owner (init)' });
      ev.push({ action: 'member.add', target: `user:${user.email ?? 'owner'}`, details: { role: 'owner', by: 'init' } });
      // the sentinel goes last: its presence is what marks the data initialised
      await s.setMeta('sentinel', makeSentinel(master).toString('base64'));
      return token;
    });
  } catch (err) {
    if (err instanceof UniqueViolation) {
      // another replica initialised the same database a moment ago: open what it made
      await store.close();
      const again = await openCore({ ...opts, allowInit: false });
      return again;
    }
    throw err;
  }
  return { core, initialized: { ownerToken, keyFile } };
}

/**
 * Offline rekey: re-seals the keyring and sentinel under a new master key in one transaction; secrets
 * are not touched. With a key file, the new key is written beside it first (master.key.new) and moved
 * into place after commit, so a crash at any point leaves a key that opens the data.
 */
export async function rekey(opts: OpenOptions & { newKey?: string }): Promise<{ newKeyFile: string | null; newKey: string | null; keys: number; replacedKeyFile?: string }> {
  const { core } = await openCore({ ...opts, allowInit: false });
  try {
    let newMaster: Buffer;
    let kdf: KdfParams | null = null;
    if (opts.newKey !== undefined) {
      const raw = parseRawKey(opts.newKey);
      if (raw) newMaster = raw;
      else {
        if (opts.newKey.length < MIN_PASSPHRASE) throw new StartupError(`the new key must be 32 bytes (hex or base64) or a passphrase of at least ${MIN_PASSPHRASE} characters`);
        kdf = defaultKdfParams();
        newMaster = await stretchPassphrase(opts.newKey, kdf);
      }
    } else newMaster = generateMasterKey();
    const useFile = core.info.masterSource === 'file' && opts.newKey === undefined;
    const path = masterKeyPath(opts.home);
    const pending = `${path}.new`;
    // a generated key is on disk before the data is sealed under it: with the old key in a file it
    // replaces that file after the commit; with the old key from the environment it stays in
    // master.key.new for the operator (printing it after the commit alone could lose it)
    if (opts.newKey === undefined) {
      // PostgreSQL replicas may never have made a data dir
      mkdirSync(dirname(pending), { recursive: true, mode: 0o700 });
      rmSync(pending, { force: true });
      writeKeyFile(pending, newMaster);
    }
    const rows = await core.write(systemContext(), async (s, ev) => {
      // under the sentinel's lock, with every key a running server may have added meanwhile (KEK
      // rotation takes the same lock): a key left out here would be deleted with the old rows
      await core.keys.checkMaster(s);
      await core.keys.refresh(s);
      const stored = await s.listKeys();
      const rows = core.keyring.resealAll(newMaster, new Map(stored.map((r) => [`${r.purpose}:${r.version}`, r.created_at])));
      await s.replaceKeys(rows);
      await s.setMeta('sentinel', makeSentinel(newMaster).toString('base64'));
      if (kdf) await s.setMeta('kdf', JSON.stringify(kdf));
      else await s.setMeta('kdf', '');
      ev.push({ action: 'key.rekey', details: { keys: rows.length, source: useFile ? 'file' : 'provided' } });
      return rows;
    });
    if (useFile) {
      renameSync(pending, path);
      return { newKeyFile: path, newKey: null, keys: rows.length };
    }
    if (opts.newKey !== undefined && core.info.masterSource === 'file') {
      // the old key file opens nothing now; left in place it would be read at the next start
      // (before the key the operator now sets) and refused as the wrong key
      const replaced = `${path}.replaced`;
      renameSync(path, replaced);
      return { newKeyFile: null, newKey: null, keys: rows.length, replacedKeyFile: replaced };
    }
    return { newKeyFile: opts.newKey === undefined ? pending : null, newKey: opts.newKey === undefined ? newMaster.toString('base64') : null, keys: rows.length };
  } finally {
    await core.close();
  }
}
