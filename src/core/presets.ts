/**
 * Platform presets (seed 001). A preset names its secrets skill:<platform>:<field>, sets the
 * category, and validates each field's format on the server. The console and CLI read the same
 * table (GET /v1/presets) so they can validate before sending.
 */
import { invalid } from './errors.js';
import type { Category } from './names.js';
import { checkValue } from './names.js';

export interface PresetField {
  key: string;
  label: string;
  optional?: boolean;
  /** regular expression source the value must match */
  pattern?: string;
  /** what the format looks like, for messages and placeholders */
  hint?: string;
}

export interface Preset {
  id: string;
  label: string;
  category: Category;
  fields: PresetField[];
}

const f = (key: string, label: string, pattern?: string, hint?: string, optional = false): PresetField => ({ key, label, pattern, hint, optional });
const opt = (key: string, label: string, pattern?: string, hint?: string) => f(key, label, pattern, hint, true);

export const PRESETS: Preset[] = [
  { id: 'openai', label: 'OpenAI', category: 'skill_credential', fields: [f('access_token', 'API Key', '^sk-[A-Za-z0-9_-]{16,}$', 'sk-...')] },
  { id: 'anthropic', label: 'Anthropic', category: 'skill_credential', fields: [f('access_token', 'API Key', '^sk-ant-[A-Za-z0-9_-]{16,}$', 'sk-ant-...')] },
  {
    id: 'google', label: 'Google Cloud / Gemini', category: 'skill_credential',
    fields: [f('api_key', 'API Key', '^[A-Za-z0-9_-]{20,}$'), opt('oauth_client_id', 'OAuth Client ID', '^[A-Za-z0-9._-]+$'), opt('oauth_client_secret', 'OAuth Client Secret')],
  },
  { id: 'elevenlabs', label: 'ElevenLabs', category: 'skill_credential', fields: [f('api_key', 'API Key', '^(xi_|sk_)[A-Za-z0-9_-]{16,}$', 'xi_...')] },
  { id: 'telegram', label: 'Telegram Bot', category: 'skill_credential', fields: [f('bot_token', 'Bot Token', '^[0-9]{5,}:[A-Za-z0-9_-]{20,}$', '123456789:AA...')] },
  {
    id: 'slack', label: 'Slack', category: 'skill_credential',
    fields: [f('bot_token', 'Bot Token', '^xoxb-[A-Za-z0-9-]{10,}$', 'xoxb-...'), opt('signing_secret', 'Signing Secret', '^[a-f0-9]{16,}$')],
  },
  { id: 'github', label: 'GitHub', category: 'skill_credential', fields: [f('access_token', 'Personal Access Token', '^(ghp_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})$', 'ghp_...')] },
  {
    id: 'stripe', label: 'Stripe', category: 'skill_credential',
    fields: [f('access_token', 'Secret Key', '^(sk|rk)_(live|test)_[A-Za-z0-9]{10,}$', 'sk_live_...'), opt('webhook_secret', 'Webhook Secret', '^whsec_[A-Za-z0-9]{10,}$', 'whsec_...')],
  },
  { id: 'sendgrid', label: 'SendGrid', category: 'skill_credential', fields: [f('api_key', 'API Key', '^SG\\.[A-Za-z0-9_.-]{10,}$', 'SG....')] },
  {
    id: 'twilio', label: 'Twilio', category: 'skill_credential',
    fields: [f('account_sid', 'Account SID', '^AC[a-zA-Z0-9]{32}$', 'AC + 32 characters'), f('auth_token', 'Auth Token', '^[a-zA-Z0-9]{32}$', '32 characters')],
  },
  {
    id: 'aws', label: 'AWS', category: 'cloud_storage',
    fields: [
      f('access_key_id', 'Access Key ID', '^(AKIA|ASIA)[A-Z0-9]{16}$', 'AKIA...'),
      f('secret_access_key', 'Secret Access Key', '^[A-Za-z0-9/+=]{40}$', '40 characters'),
      opt('region', 'Region', '^[a-z]{2}(-[a-z]+)+-[0-9]$', 'us-east-1'),
    ],
  },
  { id: 'cloudflare', label: 'Cloudflare', category: 'skill_credential', fields: [f('api_token', 'API Token', '^[A-Za-z0-9_-]{20,}$'), opt('account_id', 'Account ID', '^[a-f0-9]{32}$')] },
  { id: 'notion', label: 'Notion', category: 'skill_credential', fields: [f('integration_token', 'Integration Token', '^(secret_|ntn_)[A-Za-z0-9]{20,}$', 'secret_...')] },
  { id: 'hubspot', label: 'HubSpot', category: 'skill_credential', fields: [f('access_token', 'Private App Token', '^pat-[a-z0-9]+-[A-Za-z0-9-]{10,}$', 'pat-...')] },
  {
    id: 'smtp', label: 'SMTP / Email', category: 'deploy_credential',
    fields: [
      f('host', 'Host', '^[A-Za-z0-9.-]+$', 'smtp.example.com'),
      opt('port', 'Port', '^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$', '587'),
      f('username', 'Username'),
      f('app_password', 'App Password'),
    ],
  },
  { id: 'database', label: 'Database', category: 'deploy_credential', fields: [f('connection_string', 'Connection String', '^[a-z][a-z0-9+.-]*://\\S+$', 'postgres://user:pass@host/db')] },
];

export function getPreset(id: unknown): Preset {
  const p = PRESETS.find((x) => x.id === id);
  if (!p) throw invalid('preset', `unknown preset; one of ${PRESETS.map((x) => x.id).join(', ')}`);
  return p;
}

export function presetSecretName(preset: Preset, field: PresetField): string {
  return `skill:${preset.id}:${field.key}`;
}

/**
 * Validates a preset's fields and returns the secrets to create. Errors name the field
 * (`fields.access_token`) and the expected format, never the value given.
 */
export function expandPreset(presetId: unknown, fields: unknown): Array<{ name: string; value: string; field: PresetField }> {
  const preset = getPreset(presetId);
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw invalid('fields', 'must be an object of field values');
  const given = fields as Record<string, unknown>;
  for (const k of Object.keys(given)) {
    if (preset.fields.some((x) => x.key === k)) continue;
    // named only when it looks like a field key: a value pasted where the key goes is not echoed back
    const field = /^[a-z][a-z0-9_]{0,63}$/.test(k) ? `fields.${k}` : 'fields';
    throw invalid(field, `${field === 'fields' ? 'holds a key that' : ''} is not a field of the ${preset.label} preset (fields: ${preset.fields.map((x) => x.key).join(', ')})`.trim());
  }
  const out: Array<{ name: string; value: string; field: PresetField }> = [];
  for (const field of preset.fields) {
    const v = given[field.key];
    if (v === undefined || v === null || v === '') {
      if (field.optional) continue;
      throw invalid(`fields.${field.key}`, `is required for the ${preset.label} preset (${field.label})`);
    }
    const value = checkValue(v, `fields.${field.key}`);
    checkFieldFormat(preset, field, value, `fields.${field.key}`);
    out.push({ name: presetSecretName(preset, field), value, field });
  }
  return out;
}

function checkFieldFormat(preset: Preset, field: PresetField, value: string, at: string): void {
  if (field.pattern && !new RegExp(field.pattern).test(value)) {
    throw invalid(at, `does not look like ${/^[AEIOU]/.test(preset.label) ? 'an' : 'a'} ${preset.label} ${field.label}${field.hint ? ` (expected ${field.hint})` : ''}`, 'invalid_format');
  }
}

/**
 * A new value for a secret a preset created (PUT, a proposal's slot): the same format check as at
 * creation, so a version cannot bring in what the preset would have refused. Other secrets pass.
 */
export function checkPresetValue(presetId: string | null, secretName: string, value: string, at = 'value'): void {
  const preset = presetId === null ? undefined : PRESETS.find((x) => x.id === presetId);
  const field = preset?.fields.find((x) => presetSecretName(preset, x) === secretName);
  if (preset && field) checkFieldFormat(preset, field, value, at);
}
