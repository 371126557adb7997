/**
 * Table types (Kysely) and the migrations that create them. One schema for both backends:
 * times are ISO-8601 UTC text (sortable), booleans are 0/1 integers, JSON is text, binary is
 * BLOB (SQLite) or BYTEA (PostgreSQL), counters are INTEGER (SQLite) or BIGINT (PostgreSQL).
 */
import { sql, type Kysely, type Migration } from 'kysely';

export interface MetaTable {
  key: string;
  value: string;
}

export interface KeysTable {
  purpose: string;
  version: number;
  wrapped: Uint8Array;
  created_at: string;
}

export interface VaultsTable {
  id: string;
  name: string;
  description: string | null;
  fallback: string; // JSON array of vault names
  passthrough: number;
  created_at: string;
  updated_at: string;
}

export interface SecretsTable {
  id: string;
  vault_id: string;
  name: string;
  category: string;
  preset: string | null;
  description: string | null;
  tags: string; // JSON array
  current_version: number;
  created_at: string;
  updated_at: string;
  last_rotated_at: string | null;
}

export interface SecretVersionsTable {
  secret_id: string;
  version: number;
  kek_version: number;
  wrapped_dek: Uint8Array;
  ciphertext: Uint8Array;
  created_at: string;
  created_by: string;
  rotated_at: string | null;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  ts: string;
  actor: string;
  action: string;
  vault: string | null;
  target: string | null;
  outcome: string;
  ip: string | null;
  request_id: string | null;
  details: string; // JSON object
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
  /** first seq still stored (after pruning, the chain restarts from anchor_seq/anchor_hash) */
  anchor_seq: number;
  anchor_hash: string;
}

export interface UsersTable {
  id: string;
  email: string | null;
  password_hash: string | null;
  role: string;
  disabled: number;
  created_at: string;
  updated_at: string;
}

export interface TokensTable {
  id: string;
  kind: string;
  hash: string;
  name: string;
  user_id: string | null;
  agent_id: string | null;
  vault_id: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
  last_used_at: string | null;
}

export interface AgentsTable {
  id: string;
  name: string;
  status: string; // active | revoked
  description: string | null;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
}

export interface VaultMembersTable {
  vault_id: string;
  kind: string; // user | agent
  member_id: string;
  role: string; // admin | member | proxy
  created_at: string;
}

export interface GrantsTable {
  id: string;
  vault_id: string;
  agent_id: string;
  kind: string; // secret | service
  target: string;
  mode: string; // use | read
  status: string; // pending | approved | denied | revoked
  reason: string | null;
  requested_by: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_reason: string | null;
  expires_at: string | null;
  created_at: string;
}

export interface ServicesTable {
  id: string;
  vault_id: string;
  name: string;
  host: string;
  path_prefix: string | null;
  port: number | null;
  auth: string; // JSON auth rule
  methods: string; // JSON array
  path_prefixes: string; // JSON array
  quota_per_minute: number | null;
  enabled: number;
  description: string | null;
  created_at: string;
  updated_at: string;
}

export interface ProposalsTable {
  id: string;
  vault_id: string;
  agent_id: string;
  status: string; // pending | approved | rejected | expired
  message: string | null;
  services: string; // JSON array of service specs
  credentials: string; // JSON array of slots (values sealed separately)
  sealed_values: Uint8Array | null; // agent-supplied values, sealed under the keyring
  approval_hash: string;
  approval_expires_at: string;
  expires_at: string;
  created_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_reason: string | null;
}

export interface AuthFailuresTable {
  key: string; // account:<email> | ip:<addr>
  failures: number;
  window_start: string;
  locked_until: string | null;
}

/** The instance CA of the forward proxy (one row): its certificate, and its private key sealed under the keyring. */
export interface ProxyCaTable {
  id: string;
  cert_pem: string;
  /** PKCS#8 private key sealed with Keyring.sealBlob('proxy-ca', 'instance', id) */
  sealed_key: Uint8Array;
  created_at: string;
}

/** Proxy request quotas: one counter per (vault, service, agent, minute), shared by replicas. */
export interface ProxyQuotaTable {
  vault_id: string;
  service: string;
  agent_id: string;
  /** the minute: floor(epoch ms / 60000) */
  win: number;
  count: number;
}

export interface DB {
  meta: MetaTable;
  keys: KeysTable;
  vaults: VaultsTable;
  secrets: SecretsTable;
  secret_versions: SecretVersionsTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
  users: UsersTable;
  tokens: TokensTable;
  agents: AgentsTable;
  vault_members: VaultMembersTable;
  grants: GrantsTable;
  services: ServicesTable;
  proposals: ProposalsTable;
  auth_failures: AuthFailuresTable;
  proxy_ca: ProxyCaTable;
  proxy_quota: ProxyQuotaTable;
}

export type Backend = 'sqlite' | 'postgres';

export const GENESIS_HASH = '0'.repeat(64);

/** Migrations in order; each receives the backend so column types can differ where they must. */
export function migrations(backend: Backend): Record<string, Migration> {
  const bin = sql.raw(backend === 'postgres' ? 'bytea' : 'blob');
  const big = sql.raw(backend === 'postgres' ? 'bigint' : 'integer');
  return {
    '0001_foundation': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('meta')
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('keys')
          .addColumn('purpose', 'text', (c) => c.notNull())
          .addColumn('version', 'integer', (c) => c.notNull())
          .addColumn('wrapped', bin, (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('keys_pk', ['purpose', 'version'])
          .execute();
        await db.schema.createTable('vaults')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('description', 'text')
          .addColumn('fallback', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('passthrough', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('secrets')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id').onDelete('cascade'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('category', 'text', (c) => c.notNull())
          .addColumn('preset', 'text')
          .addColumn('description', 'text')
          .addColumn('tags', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('current_version', 'integer', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('last_rotated_at', 'text')
          .addUniqueConstraint('secrets_vault_name', ['vault_id', 'name'])
          .execute();
        await db.schema.createIndex('secrets_vault_category').on('secrets').columns(['vault_id', 'category', 'name']).execute();
        await db.schema.createTable('secret_versions')
          .addColumn('secret_id', 'text', (c) => c.notNull().references('secrets.id').onDelete('cascade'))
          .addColumn('version', 'integer', (c) => c.notNull())
          .addColumn('kek_version', 'integer', (c) => c.notNull())
          .addColumn('wrapped_dek', bin, (c) => c.notNull())
          .addColumn('ciphertext', bin, (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('rotated_at', 'text')
          .addPrimaryKeyConstraint('secret_versions_pk', ['secret_id', 'version'])
          .execute();
        await db.schema.createIndex('secret_versions_kek').on('secret_versions').columns(['kek_version']).execute();
        await db.schema.createTable('audit_events')
          .addColumn('seq', big, (c) => c.primaryKey())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('ts', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('vault', 'text')
          .addColumn('target', 'text')
          .addColumn('outcome', 'text', (c) => c.notNull())
          .addColumn('ip', 'text')
          .addColumn('request_id', 'text')
          .addColumn('details', 'text', (c) => c.notNull())
          .addColumn('prev_hash', 'text', (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('audit_ts').on('audit_events').columns(['ts']).execute();
        await db.schema.createIndex('audit_action').on('audit_events').columns(['action', 'seq']).execute();
        await db.schema.createIndex('audit_vault').on('audit_events').columns(['vault', 'seq']).execute();
        await db.schema.createIndex('audit_target').on('audit_events').columns(['target', 'seq']).execute();
        await db.schema.createIndex('audit_actor').on('audit_events').columns(['actor', 'seq']).execute();
        await db.schema.createTable('audit_head')
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('seq', big, (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull())
          .addColumn('anchor_seq', big, (c) => c.notNull())
          .addColumn('anchor_hash', 'text', (c) => c.notNull())
          .execute();
        await db.insertInto('audit_head').values({ id: 1, seq: 0, hash: GENESIS_HASH, anchor_seq: 0, anchor_hash: GENESIS_HASH }).execute();
        await db.schema.createTable('users')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('email', 'text', (c) => c.unique())
          .addColumn('password_hash', 'text')
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull().unique())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('cascade'))
          .addColumn('agent_id', 'text')
          .addColumn('vault_id', 'text')
          .addColumn('expires_at', 'text')
          .addColumn('revoked_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('last_used_at', 'text')
          .execute();
      },
      async down() {
        throw new Error('downgrades are not supported');
      },
    },
    '0002_access': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('agents')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('description', 'text')
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .execute();
        await db.schema.createTable('vault_members')
          .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id').onDelete('cascade'))
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('member_id', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('vault_members_pk', ['vault_id', 'kind', 'member_id'])
          .execute();
        await db.schema.createIndex('vault_members_member').on('vault_members').columns(['kind', 'member_id']).execute();
        await db.schema.createTable('grants')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id').onDelete('cascade'))
          .addColumn('agent_id', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('target', 'text', (c) => c.notNull())
          .addColumn('mode', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('reason', 'text')
          .addColumn('requested_by', 'text', (c) => c.notNull())
          .addColumn('decided_by', 'text')
          .addColumn('decided_at', 'text')
          .addColumn('decision_reason', 'text')
          .addColumn('expires_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('grants_lookup').on('grants').columns(['vault_id', 'agent_id', 'kind', 'target']).execute();
        await db.schema.createTable('services')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id').onDelete('cascade'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('host', 'text', (c) => c.notNull())
          .addColumn('path_prefix', 'text')
          .addColumn('port', 'integer')
          .addColumn('auth', 'text', (c) => c.notNull())
          .addColumn('methods', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('path_prefixes', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('quota_per_minute', 'integer')
          .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('description', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('services_vault_name', ['vault_id', 'name'])
          .execute();
        await db.schema.createTable('proposals')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id').onDelete('cascade'))
          .addColumn('agent_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('message', 'text')
          .addColumn('services', 'text', (c) => c.notNull())
          .addColumn('credentials', 'text', (c) => c.notNull())
          .addColumn('sealed_values', bin)
          .addColumn('approval_hash', 'text', (c) => c.notNull().unique())
          .addColumn('approval_expires_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('decided_by', 'text')
          .addColumn('decided_at', 'text')
          .addColumn('decision_reason', 'text')
          .execute();
        await db.schema.createIndex('proposals_vault').on('proposals').columns(['vault_id', 'status', 'created_at']).execute();
        await db.schema.createTable('auth_failures')
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('failures', 'integer', (c) => c.notNull())
          .addColumn('window_start', 'text', (c) => c.notNull())
          .addColumn('locked_until', 'text')
          .execute();
      },
      async down() {
        throw new Error('downgrades are not supported');
      },
    },
    '0003_proxy_quota': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('proxy_quota')
          .addColumn('vault_id', 'text', (c) => c.notNull())
          .addColumn('service', 'text', (c) => c.notNull())
          .addColumn('agent_id', 'text', (c) => c.notNull())
          .addColumn('win', big, (c) => c.notNull())
          .addColumn('count', 'integer', (c) => c.notNull())
          .addPrimaryKeyConstraint('proxy_quota_pk', ['vault_id', 'service', 'agent_id', 'win'])
          .execute();
        await db.schema.createIndex('proxy_quota_win').on('proxy_quota').columns(['win']).execute();
      },
      async down() {
        throw new Error('downgrades are not supported');
      },
    },
    '0004_proxy_ca': {
      async up(db: Kysely<any>) {
        // a single row (id 'instance'): the primary key makes a concurrent second creator fail, not duplicate
        await db.schema.createTable('proxy_ca')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('cert_pem', 'text', (c) => c.notNull())
          .addColumn('sealed_key', bin, (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
      },
      async down() {
        throw new Error('downgrades are not supported');
      },
    },
  };
}
