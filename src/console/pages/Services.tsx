/** Services: how a credential is attached to outbound requests. List, add/edit with a form per auth rule, remove. */
import { useState, type FormEvent } from 'react';
import { ApiError, lk, type AuthRule, type Service, type ServiceSpec } from '../api';
import { useSession } from '../session';
import { clearErrorOnInput, ConfirmDialog, Dialog, Empty, Field, FormActions, Notice, PageHeader, useAsync } from '../ui';
import { DataTable, ListStatus } from '../list';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const AUTH_TYPES: Array<{ id: AuthRule['type']; label: string; help: string }> = [
  { id: 'bearer', label: 'Bearer token', help: 'Authorization: Bearer <credential>' },
  { id: 'basic', label: 'Basic auth', help: 'Authorization: Basic base64(user:password)' },
  { id: 'header', label: 'Custom header', help: '<Header-Name>: <prefix><credential>' },
  { id: 'query', label: 'Query parameter', help: '?<param>=<credential>' },
  { id: 'template', label: 'Header templates', help: 'Headers with {{ KEY }} placeholders' },
];

export function authSummary(a: AuthRule): string {
  switch (a.type) {
    case 'bearer':
      return `Bearer ${a.key}`;
    case 'basic':
      return `Basic ${a.username_key}${a.password_key ? `:${a.password_key}` : ''}`;
    case 'header':
      return `${a.name}: ${a.prefix ?? ''}${a.key}`;
    case 'query':
      return `?${a.param}=${a.key}`;
    case 'template':
      return Object.entries(a.headers)
        .map(([k, v]) => `${k}: ${v}`)
        .join('; ');
  }
}

export function Services() {
  const { vault } = useSession();
  const list = useAsync(() => lk.services(vault), [vault]);
  const [editing, setEditing] = useState<Service | 'new' | null>(null);
  const [removing, setRemoving] = useState<Service | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const items = list.data?.items ?? [];

  return (
    <div>
      <PageHeader title="Services" sub={<>Each service says which host a credential may be sent to and how it is attached. Vault <strong>{vault}</strong>.</>}>
        <button type="button" className="btn btn-primary" onClick={() => setEditing('new')}>
          Add service
        </button>
      </PageHeader>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      <ListStatus
        list={list}
        count={items.length}
        empty={
          <Empty title="No services yet">
            Add one, or let an agent propose it: its proposal shows up under Proposals for you to approve.
          </Empty>
        }
      />
      {items.length ? (
        <DataTable caption={<>Services of vault {vault}</>} columns={['Name', 'Host', 'Auth', 'Limits', 'State']} actions>
          {items.map((s) => (
            <tr key={s.name}>
              <td>
                <strong>{s.name}</strong>
                {s.description ? <div className="muted small clamp">{s.description}</div> : null}
              </td>
              <td>
                <code>{s.host}</code>
              </td>
              <td>
                <code className="break">{authSummary(s.auth)}</code>
              </td>
              <td className="small">
                {s.methods.length ? <div>{s.methods.join(' ')}</div> : <div className="muted">any method</div>}
                {s.path_prefixes.length ? <div>paths {s.path_prefixes.join(', ')}</div> : null}
                {s.quota_per_minute ? <div>{s.quota_per_minute}/min</div> : null}
              </td>
              <td>
                <span className={`badge st ${s.enabled ? 'st-approved' : 'st-revoked'}`}>{s.enabled ? 'enabled' : 'disabled'}</span>
              </td>
              <td className="actions">
                <button type="button" className="btn btn-small" onClick={() => setEditing(s)} aria-label={`Edit ${s.name}`}>
                  Edit
                </button>
                <button type="button" className="btn btn-small btn-danger-ghost" onClick={() => setRemoving(s)} aria-label={`Remove ${s.name}`}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </DataTable>
      ) : null}
      {editing ? (
        <ServiceDialog
          vault={vault}
          service={editing === 'new' ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={(s, created) => {
            setEditing(null);
            setNotice(`${created ? 'Added' : 'Saved'} service ${s.name}.`);
            list.reload();
          }}
        />
      ) : null}
      {removing ? (
        <ConfirmDialog
          title="Remove service"
          confirmLabel="Remove"
          danger
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            await lk.deleteService(vault, removing.name);
            setNotice(`Removed service ${removing.name}.`);
            list.reload();
          }}
        >
          <p>
            <strong>{removing.name}</strong> is removed and its grants are revoked: agents can no longer reach <code>{removing.host}</code> through it. The
            credentials it used stay in the vault.
          </p>
        </ConfirmDialog>
      ) : null}
    </div>
  );
}

interface Draft {
  name: string;
  host: string;
  description: string;
  type: AuthRule['type'];
  key: string;
  username_key: string;
  password_key: string;
  header: string;
  prefix: string;
  param: string;
  templates: Array<{ name: string; value: string }>;
  methods: string[];
  paths: string;
  quota: string;
  enabled: boolean;
}

function draftOf(s: Service | null): Draft {
  const d: Draft = {
    name: s?.name ?? '', host: s?.host ?? '', description: s?.description ?? '', type: s?.auth.type ?? 'bearer', key: '', username_key: '', password_key: '',
    header: '', prefix: '', param: '', templates: [{ name: 'Authorization', value: 'Bearer {{ KEY }}' }], methods: s?.methods ?? [],
    paths: (s?.path_prefixes ?? []).join('\n'), quota: s?.quota_per_minute ? String(s.quota_per_minute) : '', enabled: s?.enabled ?? true,
  };
  const a = s?.auth;
  if (a?.type === 'bearer') d.key = a.key;
  if (a?.type === 'basic') {
    d.username_key = a.username_key;
    d.password_key = a.password_key ?? '';
  }
  if (a?.type === 'header') {
    d.header = a.name;
    d.key = a.key;
    d.prefix = a.prefix ?? '';
  }
  if (a?.type === 'query') {
    d.param = a.param;
    d.key = a.key;
  }
  if (a?.type === 'template') d.templates = Object.entries(a.headers).map(([name, value]) => ({ name, value }));
  return d;
}

function authOf(d: Draft): AuthRule {
  switch (d.type) {
    case 'bearer':
      return { type: 'bearer', key: d.key.trim() };
    case 'basic':
      return { type: 'basic', username_key: d.username_key.trim(), ...(d.password_key.trim() ? { password_key: d.password_key.trim() } : {}) };
    case 'header':
      return { type: 'header', name: d.header.trim(), key: d.key.trim(), ...(d.prefix ? { prefix: d.prefix } : {}) };
    case 'query':
      return { type: 'query', param: d.param.trim(), key: d.key.trim() };
    case 'template':
      return { type: 'template', headers: Object.fromEntries(d.templates.filter((t) => t.name.trim()).map((t) => [t.name.trim(), t.value])) };
  }
}

/** Maps a server field (auth.key, methods.0, …) to the form's field. */
function formField(field: string): string {
  if (field.startsWith('auth.headers')) return 'templates';
  if (field === 'auth.name') return 'header';
  if (field.startsWith('auth.')) return field.slice(5);
  if (field.startsWith('path_prefixes')) return 'paths';
  if (field.startsWith('methods')) return 'methods';
  if (field === 'quota_per_minute') return 'quota';
  return field;
}

function ServiceDialog({ vault, service, onClose, onSaved }: { vault: string; service: Service | null; onClose: () => void; onSaved: (s: Service, created: boolean) => void }) {
  const secrets = useAsync(() => lk.secrets(vault, { limit: 1000 }), [vault]);
  const [d, setD] = useState<Draft>(() => draftOf(service));
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof Draft>(k: K, v: Draft[K]) => setD((x) => ({ ...x, [k]: v }));
  const text = (k: keyof Draft) => (e: { target: { value: string } }) => set(k, e.target.value as never);
  const listId = `credentials-${vault}`;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const next: Record<string, string> = {};
    if (!service && !SERVICE_NAME_RE.test(d.name)) next.name = 'Lower-case letters, digits and . _ -, starting with a letter or digit.';
    if (!d.host.trim()) next.host = 'Enter the host, like api.stripe.com or *.github.com.';
    const needKey = d.type === 'bearer' || d.type === 'header' || d.type === 'query';
    if (needKey && !d.key.trim()) next.key = 'Name the credential to send.';
    if (d.type === 'basic' && !d.username_key.trim()) next.username_key = 'Name the credential holding the user name.';
    if (d.type === 'header' && !d.header.trim()) next.header = 'Enter the header name.';
    if (d.type === 'query' && !d.param.trim()) next.param = 'Enter the query parameter.';
    if (d.type === 'template' && !d.templates.some((t) => t.name.trim())) next.templates = 'Add at least one header.';
    if (d.quota && !(Number.isInteger(Number(d.quota)) && Number(d.quota) >= 1)) next.quota = 'A whole number of requests per minute, or empty for no quota.';
    setErrs(next);
    setError(null);
    if (Object.keys(next).length) return;
    const spec: Omit<ServiceSpec, 'name'> = {
      host: d.host.trim(),
      auth: authOf(d),
      methods: d.methods,
      path_prefixes: d.paths.split('\n').map((p) => p.trim()).filter(Boolean),
      quota_per_minute: d.quota ? Number(d.quota) : null,
      enabled: d.enabled,
      description: d.description.trim() || null,
    };
    setBusy(true);
    try {
      const saved = service ? await lk.putService(vault, service.name, spec) : await lk.createService(vault, { name: d.name, ...spec });
      onSaved(saved, !service);
    } catch (err) {
      setBusy(false);
      if (err instanceof ApiError && err.code === 'service_exists') return setErrs({ name: err.message });
      if (err instanceof ApiError && err.field) {
        const f = formField(err.field);
        const known = ['name', 'host', 'key', 'username_key', 'password_key', 'header', 'prefix', 'param', 'templates', 'methods', 'paths', 'quota', 'description'];
        if (known.includes(f)) return setErrs({ [f]: err.message });
      }
      setError(err);
    }
  };

  const keyField = (k: 'key' | 'username_key' | 'password_key', label: string, optional = false) => (
    <Field label={label} optional={optional} error={errs[k]} hint="The name of a secret in this vault (it must exist)">
      {(p) => <input {...p} name={k} value={d[k]} onChange={text(k)} list={listId} spellCheck={false} autoComplete="off" />}
    </Field>
  );

  return (
    <Dialog title={service ? `Edit service ${service.name}` : 'Add service'} onClose={onClose} wide>
      <form onSubmit={submit} onInput={clearErrorOnInput(setErrs)} noValidate>
        <datalist id={listId}>
          {(secrets.data?.items ?? []).map((s) => (
            <option key={s.name} value={s.name} />
          ))}
        </datalist>
        <div className="grid-2">
          <Field label="Name" error={errs.name}>
            {(p) => <input {...p} name="name" value={d.name} onChange={text('name')} readOnly={!!service} spellCheck={false} autoComplete="off" autoFocus={!service} />}
          </Field>
          <Field label="Host" error={errs.host} hint="api.stripe.com, *.github.com, or with a path prefix: api.example.com/v2">
            {(p) => <input {...p} name="host" value={d.host} onChange={text('host')} spellCheck={false} autoComplete="off" autoFocus={!!service} />}
          </Field>
        </div>
        <Field label="Auth rule" hint={AUTH_TYPES.find((t) => t.id === d.type)?.help}>
          {(p) => (
            <select {...p} value={d.type} onChange={(e) => set('type', e.target.value as AuthRule['type'])}>
              {AUTH_TYPES.map((t) => (
                <option key={t.id} value={t.id}>
                  {t.label}
                </option>
              ))}
            </select>
          )}
        </Field>
        <div className="rule-box">
          {d.type === 'bearer' ? keyField('key', 'Credential') : null}
          {d.type === 'basic' ? (
            <div className="grid-2">
              {keyField('username_key', 'User name credential')}
              {keyField('password_key', 'Password credential', true)}
            </div>
          ) : null}
          {d.type === 'header' ? (
            <div className="grid-3">
              <Field label="Header name" error={errs.header}>
                {(p) => <input {...p} name="header" value={d.header} onChange={text('header')} placeholder="X-API-Key" spellCheck={false} />}
              </Field>
              <Field label="Prefix" optional error={errs.prefix}>
                {(p) => <input {...p} name="prefix" value={d.prefix} onChange={text('prefix')} placeholder="token " spellCheck={false} />}
              </Field>
              {keyField('key', 'Credential')}
            </div>
          ) : null}
          {d.type === 'query' ? (
            <div className="grid-2">
              <Field label="Query parameter" error={errs.param}>
                {(p) => <input {...p} name="param" value={d.param} onChange={text('param')} placeholder="api_key" spellCheck={false} />}
              </Field>
              {keyField('key', 'Credential')}
            </div>
          ) : null}
          {d.type === 'template' ? (
            <fieldset className="templates">
              <legend>Headers</legend>
              {errs.templates ? <div className="field-error">{errs.templates}</div> : null}
              {d.templates.map((t, i) => (
                <div className="template-row" key={i}>
                  <Field label={`Header ${i + 1} name`}>
                    {(p) => (
                      <input {...p} value={t.name} spellCheck={false} onChange={(e) => set('templates', d.templates.map((x, j) => (j === i ? { ...x, name: e.target.value } : x)))} />
                    )}
                  </Field>
                  <Field label={`Header ${i + 1} value`} hint={i === 0 ? 'Use {{ KEY }} for a credential' : undefined}>
                    {(p) => (
                      <input {...p} value={t.value} spellCheck={false} onChange={(e) => set('templates', d.templates.map((x, j) => (j === i ? { ...x, value: e.target.value } : x)))} />
                    )}
                  </Field>
                  <button type="button" className="btn btn-small" onClick={() => set('templates', d.templates.filter((_, j) => j !== i))} aria-label={`Remove header ${i + 1}`}>
                    Remove
                  </button>
                </div>
              ))}
              <button type="button" className="btn btn-small" onClick={() => set('templates', [...d.templates, { name: '', value: '' }])}>
                Add header
              </button>
            </fieldset>
          ) : null}
        </div>
        <fieldset className="checks">
          <legend>Allowed methods (none checked: any)</legend>
          {errs.methods ? <div className="field-error">{errs.methods}</div> : null}
          {METHODS.map((m) => (
            <label key={m} className="check">
              <input type="checkbox" checked={d.methods.includes(m)} onChange={(e) => set('methods', e.target.checked ? [...d.methods, m] : d.methods.filter((x) => x !== m))} /> {m}
            </label>
          ))}
        </fieldset>
        <div className="grid-2">
          <Field label="Allowed path prefixes" optional error={errs.paths} hint="One per line, like /v1/charges">
            {(p) => <textarea {...p} rows={3} name="paths" value={d.paths} onChange={text('paths')} spellCheck={false} />}
          </Field>
          <div>
            <Field label="Quota (requests per minute)" optional error={errs.quota}>
              {(p) => <input {...p} type="number" min={1} name="quota" value={d.quota} onChange={text('quota')} />}
            </Field>
            <label className="check">
              <input type="checkbox" checked={d.enabled} onChange={(e) => set('enabled', e.target.checked)} /> Enabled
            </label>
          </div>
        </div>
        <Field label="Description" optional error={errs.description}>
          {(p) => <input {...p} name="description" value={d.description} onChange={text('description')} maxLength={1024} />}
        </Field>
        <FormActions error={error} onCancel={onClose} busy={busy} label={service ? 'Save service' : 'Add service'} busyLabel="Saving…" />
      </form>
    </Dialog>
  );
}
