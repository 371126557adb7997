/** Names and limits, validated once here for the API, the CLI and proposals alike. */
import { invalid } from './errors.js';

export const LIMITS = {
  secretName: 128,
  vaultName: 63,
  valueBytes: 65536,
  description: 1024,
  tags: 32,
  tagLength: 64,
  listPage: 1000,
  fallbackDepth: 8,
} as const;

export const SECRET_NAME_RE = /^(?:[A-Z][A-Z0-9_]*|skill:[a-z0-9][a-z0-9_-]*:[a-z0-9][a-z0-9_]*)$/;
export const VAULT_NAME_RE = /^[a-z0-9][a-z0-9_-]*$/;

export const CATEGORIES = ['deploy_credential', 'skill_credential', 'cloud_storage', 'api_key', 'custom'] as const;
export type Category = (typeof CATEGORIES)[number];

export function checkSecretName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw invalid(field, 'is required');
  if (name.length > LIMITS.secretName) throw invalid(field, `is longer than ${LIMITS.secretName} characters`);
  if (!SECRET_NAME_RE.test(name)) {
    throw invalid(field, 'must be UPPER_SNAKE_CASE (like STRIPE_KEY) or namespaced like skill:<platform>:<key> (lower case)');
  }
  return name;
}

export function checkVaultName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw invalid(field, 'is required');
  if (name.length > LIMITS.vaultName) throw invalid(field, `is longer than ${LIMITS.vaultName} characters`);
  if (!VAULT_NAME_RE.test(name)) throw invalid(field, 'must be lower case letters, digits, - and _, starting with a letter or digit');
  return name;
}

export function checkValue(value: unknown, field = 'value'): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  if (value.length === 0) throw invalid(field, 'must not be empty');
  if (Buffer.byteLength(value, 'utf8') > LIMITS.valueBytes) throw invalid(field, `is larger than ${LIMITS.valueBytes} bytes`, 'value_too_large');
  return value;
}

export function checkCategory(c: unknown, field = 'category'): Category {
  if (typeof c !== 'string' || !(CATEGORIES as readonly string[]).includes(c)) throw invalid(field, `must be one of ${CATEGORIES.join(', ')}`);
  return c as Category;
}
