/**
 * The one Store interface. Core speaks only to this; the SQL behind it is Kysely, written once for
 * SQLite and PostgreSQL (see kysely-store.ts). A Store obtained inside tx() is bound to that
 * transaction: every call made through it commits or rolls back together.
 */
import type { Backend, DB } from './schema.js';
import type { Selectable, Insertable } from 'kysely';

export type Row<T extends keyof DB> = Selectable<DB[T]>;
export type NewRow<T extends keyof DB> = Insertable<DB[T]>;

export type VaultRow = Row<'vaults'>;
export type SecretRow = Row<'secrets'>;
export type VersionRow = Row<'secret_versions'>;
export type AuditRow = Row<'audit_events'>;
export type UserRow = Row<'users'>;
export type TokenRow = Row<'tokens'>;
export type KeyRow = Row<'keys'>;
export type AuditHead = Row<'audit_head'>;
export type AgentRow = Row<'agents'>;
export type MemberRow = Row<'vault_members'>;
export type GrantRow = Row<'grants'>;
export type ServiceRow = Row<'services'>;
export type ProposalRow = Row<'proposals'>;
export type AuthFailureRow = Row<'auth_failures'>;
export type ProxyCaRow = Row<'proxy_ca'>;

export interface ProxyAuthRow {
  token: TokenRow;
  /** the token's agent (null for people's tokens or a dangling agent id) */
  agent: AgentRow | null;
  vault: VaultRow | null;
  /** the agent's role in that vault, null when it is not a member */
  role: string | null;
  /** the named service (when one was asked for and exists) */
  service: ServiceRow | null;
  /** the agent's `use` grant on that service, if approved and unexpired */
  grantId: string | null;
}

export interface SecretListQuery {
  vaultId: string;
  category?: string;
  prefix?: string;
  q?: string;
  /** `q` matches names only (an agent's listing: descriptions are not theirs to probe) */
  namesOnly?: boolean;
  after?: string; // name cursor (exclusive)
  limit: number;
}

export interface AuditQuery {
  vault?: string;
  actor?: string;
  target?: string;
  /** events about a secret: its own (target = name), its grants (`secret:NAME`), proxied requests that injected it */
  secret?: string;
  /** events by or about an agent: its actions, its creation, token rotation and revocation, its grants */
  agent?: string;
  action?: string; // exact, or a prefix when it ends with '.' or '*'
  outcome?: string;
  since?: string;
  until?: string;
  q?: string;
  beforeSeq?: number; // cursor (exclusive), newest first
  limit: number;
}

export interface SecretWithCurrent {
  secret: SecretRow;
  version: VersionRow;
}

export interface Store {
  readonly backend: Backend;
  /** Where the data lives, with no password (for status and logs). */
  readonly location: string;

  /** Runs fn in one transaction; a nested call joins the outer transaction. */
  tx<T>(fn: (s: Store) => Promise<T>): Promise<T>;
  close(): Promise<void>;

  // meta and keys
  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string): Promise<void>;
  /** Inside a transaction: a meta value, its row locked until commit (the sentinel: rekey and KEK rotation take it in turn). */
  lockMeta(key: string): Promise<string | null>;
  listKeys(): Promise<KeyRow[]>;
  insertKey(row: KeyRow): Promise<void>;
  replaceKeys(rows: KeyRow[]): Promise<void>;

  // vaults
  getVault(name: string): Promise<VaultRow | null>;
  getVaultById(id: string): Promise<VaultRow | null>;
  listVaults(): Promise<Array<VaultRow & { secret_count: number }>>;
  insertVault(row: VaultRow): Promise<void>;
  updateVault(id: string, patch: Partial<Pick<VaultRow, 'fallback' | 'description' | 'passthrough' | 'updated_at'>>): Promise<void>;
  /** Deletes the vault and its secrets; `deleted` false when the vault was already gone (a concurrent delete). */
  deleteVault(id: string): Promise<{ secrets: number; deleted: boolean }>;

  // secrets
  getSecret(vaultId: string, name: string): Promise<SecretRow | null>;
  /**
   * Inside a transaction: the secret row, locked until commit (PostgreSQL `FOR UPDATE`; SQLite's
   * writer is one connection, so its transactions never interleave). Every change to a secret
   * starts here, so concurrent changes queue instead of failing or repeating.
   */
  lockSecret(vaultId: string, name: string): Promise<SecretRow | null>;
  /**
   * Inside a transaction, until it ends: one holder at a time for a secret name across every vault
   * (PostgreSQL: an advisory lock; SQLite's single writer is that already). Taken after the row lock.
   */
  lockSecretName(name: string): Promise<void>;
  /** The secret with its current version, or a given one: the read hot path, one query. */
  getSecretValueRow(vaultId: string, name: string, version?: number): Promise<SecretWithCurrent | null>;
  /** Vault, secret and version by vault name in one query (the read hot path); null if any is missing. */
  getVaultSecretValueRow(vaultName: string, name: string, version?: number): Promise<(SecretWithCurrent & { vault: VaultRow }) | null>;
  listSecrets(q: SecretListQuery): Promise<SecretRow[]>;
  insertSecret(row: SecretRow): Promise<void>;
  /** Sets current_version = next only if it still equals expected; false when it moved (check-and-set). */
  advanceSecret(id: string, expected: number, next: number, patch: Partial<Pick<SecretRow, 'category' | 'description' | 'tags' | 'updated_at'>>): Promise<boolean>;
  touchSecretRotated(id: string, at: string): Promise<void>;
  deleteSecret(id: string): Promise<{ versions: number }>;
  insertVersion(row: VersionRow): Promise<void>;
  getVersion(secretId: string, version: number): Promise<VersionRow | null>;
  listVersions(secretId: string): Promise<Array<Omit<VersionRow, 'wrapped_dek' | 'ciphertext'>>>;
  updateVersionSeal(secretId: string, version: number, seal: Pick<VersionRow, 'kek_version' | 'wrapped_dek' | 'ciphertext'> & { rotated_at?: string | null }): Promise<void>;
  /** Current versions of a vault's secrets ordered by name, after a name cursor (rotate-all batches). */
  listCurrentVersions(vaultId: string, after: string | null, limit: number): Promise<SecretWithCurrent[]>;
  /** Versions whose DEK is wrapped by an older KEK than `kekVersion` (rewrap batches), by (secret_id, version). */
  listVersionsBelowKek(kekVersion: number, limit: number): Promise<Array<VersionRow & { vault_id: string }>>;
  /** Counts over every secret, or over those in `vaultIds`. */
  countSecrets(vaultIds?: readonly string[]): Promise<{ total: number; byCategory: Record<string, number>; byKek: Record<string, number>; lastRotatedAt: string | null }>;
  countVaultSecrets(vaultId: string): Promise<number>;

  // audit
  /** Locks and returns the chain head (FOR UPDATE on PostgreSQL; SQLite transactions are serialized). */
  lockAuditHead(): Promise<AuditHead>;
  getAuditHead(): Promise<AuditHead>;
  insertAuditEvents(rows: AuditRow[]): Promise<void>;
  setAuditHead(seq: number, hash: string): Promise<void>;
  /**
   * Appends audit events: locks the chain head, lets `make` build the rows from it (synchronously),
   * inserts them and moves the head — in this store's transaction if it is one, else in one of its
   * own (on SQLite then one synchronous transaction on the writer when no other is open there).
   */
  appendAudit(make: (head: AuditHead) => AuditRow[]): Promise<AuditRow[]>;
  queryAudit(q: AuditQuery): Promise<AuditRow[]>;
  /** Events in chain order from seq > after, up to limit. */
  auditRange(after: number, limit: number): Promise<AuditRow[]>;
  countAudit(): Promise<number>;
  pruneAudit(throughSeq: number, anchorHash: string): Promise<number>;
  /** The newest event with ts < before (the anchor a prune would leave). */
  lastAuditBefore(before: string): Promise<AuditRow | null>;

  // people and tokens
  countUsers(): Promise<number>;
  getUser(id: string): Promise<UserRow | null>;
  getUserByEmail(email: string): Promise<UserRow | null>;
  insertUser(row: UserRow): Promise<void>;
  updateUser(id: string, patch: Partial<Pick<UserRow, 'email' | 'password_hash' | 'role' | 'disabled' | 'updated_at'>>): Promise<void>;
  insertToken(row: TokenRow): Promise<void>;
  /** The token with its person, in one query (the authentication hot path). */
  getTokenWithUser(hash: string): Promise<{ token: TokenRow; user: UserRow | null } | null>;
  getTokenByHash(hash: string): Promise<TokenRow | null>;
  listTokens(filter: { userId?: string; agentId?: string; kind?: string }): Promise<TokenRow[]>;
  revokeToken(id: string, at: string): Promise<boolean>;
  revokeTokensOf(filter: { agentId?: string; userId?: string; kind?: string }, at: string): Promise<number>;
  listUsers(): Promise<UserRow[]>;
  countActiveOwners(): Promise<number>;

  // agents and vault membership
  insertAgent(row: AgentRow): Promise<void>;
  getAgent(id: string): Promise<AgentRow | null>;
  getAgentByName(name: string): Promise<AgentRow | null>;
  listAgents(): Promise<AgentRow[]>;
  updateAgent(id: string, patch: Partial<Pick<AgentRow, 'status' | 'revoked_at' | 'description'>>): Promise<void>;
  upsertMember(row: MemberRow): Promise<void>;
  deleteMember(vaultId: string, kind: string, memberId: string): Promise<boolean>;
  getMemberRole(vaultId: string, kind: string, memberId: string): Promise<string | null>;
  /** Inside a transaction: the membership's role, its row locked until commit (an agent's requests in a vault queue on it). */
  lockMember(vaultId: string, kind: string, memberId: string): Promise<string | null>;
  listMembers(vaultId: string): Promise<MemberRow[]>;
  listMemberships(kind: string, memberId: string): Promise<MemberRow[]>;

  // grants
  insertGrant(row: GrantRow): Promise<void>;
  getGrant(id: string): Promise<GrantRow | null>;
  listGrants(filter: { vaultId?: string; agentId?: string; status?: string; kind?: string; target?: string }): Promise<GrantRow[]>;
  /** Moves a grant from one of `from` states; false when it was no longer in one (a race lost). */
  transitionGrant(id: string, from: string[], patch: Partial<GrantRow>): Promise<boolean>;
  /** The newest approved, unexpired grant covering (agent, kind, target, mode) in a vault. */
  findActiveGrant(vaultId: string, agentId: string, kind: string, target: string, modes: string[], now: string): Promise<GrantRow | null>;

  // services
  insertService(row: ServiceRow): Promise<void>;
  getService(vaultId: string, name: string): Promise<ServiceRow | null>;
  listServices(vaultId: string): Promise<ServiceRow[]>;
  updateService(id: string, patch: Partial<ServiceRow>): Promise<void>;
  deleteService(id: string): Promise<void>;

  // proposals
  insertProposal(row: ProposalRow): Promise<void>;
  getProposal(id: string): Promise<ProposalRow | null>;
  getProposalByApprovalHash(hash: string): Promise<ProposalRow | null>;
  listProposals(filter: { vaultId?: string; agentId?: string; status?: string }): Promise<ProposalRow[]>;
  /**
   * Changes a pending proposal; false when it no longer is (pending -> approved/rejected/expired
   * happens exactly once). Leaving `pending` drops its sealed values.
   */
  transitionProposal(id: string, patch: Partial<ProposalRow> & { status: string }): Promise<boolean>;
  /**
   * Marks pending proposals past their expiry `expired`, and drops the sealed values of every
   * proposal that is not pending (also those decided before values were dropped on decision);
   * returns how many it expired.
   */
  sweepProposals(now: string): Promise<number>;
  /** A pending proposal's values re-sealed (key rewrap); false when it was no longer pending. */
  updateProposalSeal(id: string, sealed: Uint8Array): Promise<boolean>;

  // the injection proxy (hot path)
  /**
   * One query: the token by its hash with its agent, the vault by name, the agent's membership in
   * it and, when `service` is given, that service of the vault and the id of the newest approved,
   * unexpired `use` grant of the agent on it. Null when no token has that hash.
   */
  getProxyAuth(tokenHash: string, vaultName: string, service?: string | null, now?: string): Promise<ProxyAuthRow | null>;
  /** A service of a vault with the newest approved, unexpired `use` grant of the agent on it (one query). */
  getProxyService(vaultId: string, agentId: string, service: string, now: string): Promise<{ service: ServiceRow; grantId: string | null } | null>;
  /** Adds one to the (vault, service, agent, minute) counter and returns the new count (one statement, replica-safe). */
  bumpProxyQuota(vaultId: string, service: string, agentId: string, win: number): Promise<number>;
  /** Deletes counters of minutes before `win`. */
  pruneProxyQuota(beforeWin: number): Promise<number>;

  // login throttling
  getAuthFailure(key: string): Promise<AuthFailureRow | null>;
  /**
   * Counts one login attempt against `key`, atomically (concurrent attempts each get their own
   * number); a window that began before `windowFrom` starts over at 1. Returns the count and lock.
   */
  bumpAuthFailure(key: string, now: string, windowFrom: string): Promise<{ failures: number; locked_until: string | null }>;
  lockAuthFailure(key: string, until: string): Promise<void>;
  /** Takes back one counted attempt (a login that succeeded). */
  releaseAuthFailure(key: string): Promise<void>;
  clearAuthFailure(key: string): Promise<void>;

  // the forward proxy's instance CA (one row, shared by every replica)
  getProxyCa(): Promise<ProxyCaRow | null>;
  /** Inserts the CA row; UniqueViolation when another creator got there first. */
  insertProxyCa(row: ProxyCaRow): Promise<void>;
  updateProxyCaKey(id: string, sealed: Uint8Array): Promise<void>;
}

/** The database aborted a transaction to break a deadlock or a serialization conflict: retrying may succeed. */
export class TransactionConflict extends Error {
  constructor(readonly dbCode: string) {
    super(`the transaction was aborted by a concurrent one (${dbCode})`);
    this.name = 'TransactionConflict';
  }
}

/** Thrown by the store for a unique-constraint violation, so core can answer 409 on both backends. */
/** The audit chain's head row is gone (the database was altered by hand): `audit verify` reports it. */
/** listGrants returns at most this many rows. */
export const GRANT_PAGE = 1000;

/** What a secret's tag may be made of (the tags column holds a JSON array of such words). */
export const TAG_RE = /^[A-Za-z0-9_.:-]+$/;

export class AuditHeadMissing extends Error {
  constructor() {
    super('the audit chain head row is missing');
    this.name = 'AuditHeadMissing';
  }
}

export class UniqueViolation extends Error {
  constructor(public readonly constraint: string) {
    super(`unique constraint violated: ${constraint}`);
    this.name = 'UniqueViolation';
  }
}
