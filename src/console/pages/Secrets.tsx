/**
 * Secrets: metadata table (never a value), add with platform presets, rotate, rotate all with
 * progress, delete with typed confirmation; the detail view reveals a value only when asked
 * (audited secret.read), with history and rollback. Value inputs are uncontrolled password
 * fields read once on submit, so a typed value never becomes an attribute in the page's HTML.
 */
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { ApiError, CATEGORIES, CATEGORY_LABELS, lk, SECRET_NAME_RE, type Category, type Preset, type SecretDetail as Detail, type SecretMeta } from '../api';
import { navigate, Link } from '../router';
import { useSession } from '../session';
import { CategoryBadge, clearErrorOnInput, ConfirmDialog, CopyButton, Dialog, Empty, ErrorBox, Field, FormActions, Loading, Notice, PageHeader, Pager, Time, useAsync, useCursorPages } from '../ui';
import { DataTable, ListStatus } from '../list';

const PAGE = 25;
const ROTATE_BATCH = 100;
const TAG_RE = /^[A-Za-z0-9_.:-]+$/;
const MAX_VALUE_BYTES = 65536;
const REVEAL_FOR_MS = 60_000;

const secretPath = (name: string) => `/secrets/${encodeURIComponent(name)}`;

export function Secrets() {
  const { vault } = useSession();
  const [category, setCategory] = useState('');
  const [qInput, setQInput] = useState('');
  const [q, setQ] = useState('');
  const pages = useCursorPages();
  const [adding, setAdding] = useState(false);
  const [rotatingAll, setRotatingAll] = useState(false);
  const [deleting, setDeleting] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [rowError, setRowError] = useState<unknown>(null);

  useEffect(() => {
    const t = setTimeout(() => setQ(qInput.trim()), 250);
    return () => clearTimeout(t);
  }, [qInput]);
  useEffect(() => pages.reset(), [vault, category, q]); // eslint-disable-line react-hooks/exhaustive-deps

  const list = useAsync(() => lk.secrets(vault, { category: category || undefined, q: q || undefined, cursor: pages.cursor, limit: PAGE }), [vault, category, q, pages.cursor]);
  const items = list.data?.items ?? [];
  const filtered = !!(category || q);

  const rotate = async (name: string) => {
    setRowError(null);
    try {
      await lk.rotateSecret(vault, name);
      setNotice(`Re-encrypted ${name} under a fresh data key; its value did not change.`);
      list.reload();
    } catch (err) {
      setRowError(err);
    }
  };

  return (
    <div>
      <PageHeader title="Secrets" sub={<>Metadata only: values stay encrypted on the server until someone presses Reveal. Vault <strong>{vault}</strong>.</>}>
        <button type="button" className="btn" onClick={() => setRotatingAll(true)}>
          Rotate all
        </button>
        <button type="button" className="btn btn-primary" onClick={() => setAdding(true)}>
          Add secret
        </button>
      </PageHeader>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      <ErrorBox error={rowError} />

      <form className="toolbar" role="search" onSubmit={(e) => e.preventDefault()}>
        <div className="field field-inline">
          <label htmlFor="secret-search">Search</label>
          <input id="secret-search" type="search" placeholder="Name or description" value={qInput} onChange={(e) => setQInput(e.target.value)} />
        </div>
        <div className="field field-inline">
          <label htmlFor="secret-category">Category</label>
          <select id="secret-category" value={category} onChange={(e) => setCategory(e.target.value)}>
            <option value="">All categories</option>
            {CATEGORIES.map((c) => (
              <option key={c} value={c}>
                {CATEGORY_LABELS[c]}
              </option>
            ))}
          </select>
        </div>
      </form>

      <ListStatus
        list={list}
        count={items.length}
        empty={
          filtered ? (
            <Empty title="No secret matches">Try another search or category.</Empty>
          ) : (
            <Empty title="No secrets in this vault yet">
              <button type="button" className="btn btn-primary" onClick={() => setAdding(true)}>
                Add the first secret
              </button>
            </Empty>
          )
        }
      />
      {items.length ? (
        <DataTable caption={<>Secrets in vault {vault}</>} columns={['Name', 'Category', 'Preset', { label: 'Versions', className: 'num' }, 'Updated', 'Last rotated']} actions>
          {items.map((s) => (
            <SecretRow key={s.name} s={s} onRotate={() => rotate(s.name)} onDelete={() => setDeleting(s.name)} />
          ))}
        </DataTable>
      ) : null}
      <Pager label="Secrets" page={pages.page} nextCursor={list.data?.next_cursor} onPrev={pages.prev} onNext={pages.next} />

      {adding ? (
        <AddSecretDialog
          vault={vault}
          onClose={() => setAdding(false)}
          onCreated={(created) => {
            setAdding(false);
            setNotice(`Created ${created.map((c) => c.name).join(', ')}.`);
            list.reload();
          }}
        />
      ) : null}
      {rotatingAll ? (
        <RotateAllDialog
          vault={vault}
          onClose={() => {
            setRotatingAll(false);
            list.reload();
          }}
        />
      ) : null}
      {deleting ? (
        <DeleteSecretDialog
          vault={vault}
          name={deleting}
          onClose={() => setDeleting(null)}
          onDeleted={() => {
            setNotice(`Deleted ${deleting}.`);
            list.reload();
          }}
        />
      ) : null}
    </div>
  );
}

function SecretRow({ s, onRotate, onDelete }: { s: SecretMeta; onRotate: () => void; onDelete: () => void }) {
  return (
    <tr>
      <td>
        <Link to={secretPath(s.name)} className="secret-name">
          {s.name}
        </Link>
        {s.description ? <div className="muted small clamp">{s.description}</div> : null}
      </td>
      <td>
        <CategoryBadge category={s.category} />
      </td>
      <td>{s.preset ?? <span className="muted">—</span>}</td>
      <td className="num">{s.version}</td>
      <td>
        <Time iso={s.updated_at} />
      </td>
      <td>
        <Time iso={s.last_rotated_at} empty="never" />
      </td>
      <td className="actions">
        <Link to={secretPath(s.name)} className="btn btn-small" aria-label={`View ${s.name}`}>
          View
        </Link>
        <button type="button" className="btn btn-small" onClick={onRotate} aria-label={`Rotate ${s.name}`}>
          Rotate
        </button>
        <button type="button" className="btn btn-small btn-danger-ghost" onClick={onDelete} aria-label={`Delete ${s.name}`}>
          Delete
        </button>
      </td>
    </tr>
  );
}

function DeleteSecretDialog({ vault, name, onClose, onDeleted }: { vault: string; name: string; onClose: () => void; onDeleted: () => void }) {
  return (
    <ConfirmDialog
      title="Delete secret"
      confirmLabel="Delete permanently"
      danger
      typed={name}
      onClose={onClose}
      onConfirm={async () => {
        await lk.deleteSecret(vault, name);
        onDeleted();
      }}
    >
      <p>
        <strong>{name}</strong> and all its versions are deleted from vault <strong>{vault}</strong> at once. Agents and services that use it stop working on
        their next request. This cannot be undone.
      </p>
    </ConfirmDialog>
  );
}

// ---- add

function byteLength(s: string) {
  return new TextEncoder().encode(s).length;
}

function AddSecretDialog({ vault, onClose, onCreated }: { vault: string; onClose: () => void; onCreated: (s: SecretMeta[]) => void }) {
  const presets = useAsync(() => lk.presets(), []);
  const [mode, setMode] = useState<'preset' | 'custom'>('preset');
  const [presetId, setPresetId] = useState('openai');
  const [name, setName] = useState('');
  const [category, setCategory] = useState<Category>('custom');
  const [show, setShow] = useState(false);
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const preset: Preset | undefined = presets.data?.items.find((p) => p.id === presetId);

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const fd = new FormData(e.currentTarget);
    const get = (k: string) => {
      const v = fd.get(k);
      return typeof v === 'string' ? v : '';
    };
    const next: Record<string, string> = {};
    let body: Record<string, unknown>;
    const description = get('description').trim();
    if (mode === 'preset') {
      if (!preset) return;
      const fields: Record<string, string> = {};
      for (const f of preset.fields) {
        const v = get(`field:${f.key}`);
        if (!v) {
          if (!f.optional) next[f.key] = `${f.label} is required.`;
          continue;
        }
        if (byteLength(v) > MAX_VALUE_BYTES) next[f.key] = 'This value is larger than 64 KiB.';
        else if (f.pattern && !new RegExp(f.pattern).test(v)) next[f.key] = `Not a valid ${preset.label} ${f.label}${f.hint ? `: expected ${f.hint}` : ''}.`;
        else fields[f.key] = v;
      }
      body = { preset: preset.id, fields, ...(description ? { description } : {}) };
    } else {
      const value = get('value');
      const tags = get('tags').split(',').map((t) => t.trim()).filter(Boolean);
      if (!SECRET_NAME_RE.test(name)) next.name = 'Use UPPER_SNAKE_CASE (like STRIPE_KEY) or skill:<platform>:<key> in lower case.';
      if (!value) next.value = 'Enter the value.';
      else if (byteLength(value) > MAX_VALUE_BYTES) next.value = 'This value is larger than 64 KiB.';
      const badTag = tags.find((t) => !TAG_RE.test(t) || t.length > 64);
      if (badTag !== undefined) next.tags = 'Tags are letters, digits and _ . : - (up to 64 characters each), separated by commas.';
      body = { name, value, category, ...(description ? { description } : {}), ...(tags.length ? { tags } : {}) };
    }
    setErrs(next);
    setError(null);
    if (Object.keys(next).length) return;
    setBusy(true);
    try {
      const r = await lk.createSecret(vault, body);
      onCreated(r.items);
    } catch (err) {
      setBusy(false);
      if (err instanceof ApiError && err.code === 'secret_exists') {
        const msg = `${err.message.split(';')[0]}. Open it to add a new version instead.`;
        if (mode === 'custom') setErrs({ name: msg });
        else setError(new Error(msg));
        return;
      }
      if (err instanceof ApiError && err.field) {
        const f = err.field.startsWith('fields.') ? err.field.slice(7) : err.field;
        if (mode === 'preset' ? preset?.fields.some((x) => x.key === f) : ['name', 'value', 'tags', 'category', 'description'].includes(f)) {
          setErrs({ [f]: err.message });
          return;
        }
      }
      setError(err);
    }
  };

  return (
    <Dialog title="Add secret" onClose={onClose} wide>
      <form onSubmit={submit} onInput={clearErrorOnInput(setErrs)} noValidate autoComplete="off">
        <fieldset className="segmented">
          <legend className="sr-only">Kind of secret</legend>
          <label className={mode === 'preset' ? 'seg seg-on' : 'seg'}>
            <input type="radio" name="mode" value="preset" checked={mode === 'preset'} onChange={() => setMode('preset')} /> Platform preset
          </label>
          <label className={mode === 'custom' ? 'seg seg-on' : 'seg'}>
            <input type="radio" name="mode" value="custom" checked={mode === 'custom'} onChange={() => setMode('custom')} /> Custom
          </label>
        </fieldset>

        {mode === 'preset' ? (
          <>
            <ErrorBox error={presets.error} />
            <Field label="Platform" hint={preset ? <>Category: <CategoryBadge category={preset.category} /></> : null}>
              {(p) => (
                <select {...p} value={presetId} onChange={(e) => { setPresetId(e.target.value); setErrs({}); }}>
                  {(presets.data?.items ?? []).map((x) => (
                    <option key={x.id} value={x.id}>
                      {x.label}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            {preset ? (
              <fieldset className="preset-fields">
                <legend>{preset.label} fields</legend>
                {preset.fields.map((f) => (
                  <Field
                    key={`${preset.id}:${f.key}`}
                    label={f.label}
                    optional={f.optional}
                    error={errs[f.key]}
                    hint={
                      <>
                        Saved as <code>skill:{preset.id}:{f.key}</code>
                        {f.hint ? <> · format {f.hint}</> : null}
                      </>
                    }
                  >
                    {(p) => <input {...p} name={`field:${f.key}`} type={show ? 'text' : 'password'} autoComplete="off" spellCheck={false} placeholder={f.hint} required={!f.optional} />}
                  </Field>
                ))}
              </fieldset>
            ) : presets.loading ? (
              <Loading what="Loading presets" />
            ) : null}
          </>
        ) : (
          <>
            <Field label="Name" error={errs.name} hint="UPPER_SNAKE_CASE like STRIPE_KEY, or skill:<platform>:<key>">
              {(p) => <input {...p} name="name" value={name} onChange={(e) => setName(e.target.value)} spellCheck={false} autoComplete="off" required />}
            </Field>
            <Field label="Category" error={errs.category}>
              {(p) => (
                <select {...p} value={category} onChange={(e) => setCategory(e.target.value as Category)}>
                  {CATEGORIES.map((c) => (
                    <option key={c} value={c}>
                      {CATEGORY_LABELS[c]}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field label="Value" error={errs.value}>
              {(p) => <input {...p} name="value" type={show ? 'text' : 'password'} autoComplete="off" spellCheck={false} required />}
            </Field>
            <Field label="Tags" optional error={errs.tags} hint="Comma separated">
              {(p) => <input {...p} name="tags" spellCheck={false} />}
            </Field>
          </>
        )}
        <Field label="Description" optional error={errs.description}>
          {(p) => <input {...p} name="description" maxLength={1024} />}
        </Field>
        <label className="check">
          <input type="checkbox" checked={show} onChange={(e) => setShow(e.target.checked)} /> Show what I type
        </label>
        <FormActions error={error} onCancel={onClose} busy={busy} disabled={mode === 'preset' && !preset} label="Save secret" busyLabel="Saving…" />
      </form>
    </Dialog>
  );
}

// ---- rotate all

function RotateAllDialog({ vault, onClose }: { vault: string; onClose: () => void }) {
  const [st, setSt] = useState<{ phase: 'ask' | 'running' | 'done' | 'stopped'; rotated: number; failed: number; total: number | null; failedNames: string[] }>({
    phase: 'ask', rotated: 0, failed: 0, total: null, failedNames: [],
  });
  const [error, setError] = useState<unknown>(null);
  const stop = useRef(false);

  const run = async () => {
    stop.current = false;
    setError(null);
    let after: string | undefined;
    let rotated = 0;
    let failed = 0;
    const failedNames: string[] = [];
    setSt({ phase: 'running', rotated, failed, total: null, failedNames });
    try {
      for (;;) {
        const r = await lk.rotateAll(vault, { ...(after ? { after } : {}), limit: ROTATE_BATCH });
        rotated += r.rotated;
        failed += r.failed;
        failedNames.push(...r.failed_names);
        const finished = r.done || !r.next_cursor;
        setSt({ phase: finished ? 'done' : 'running', rotated, failed, total: r.total, failedNames: [...failedNames] });
        if (finished) break;
        if (stop.current) {
          setSt((s) => ({ ...s, phase: 'stopped' }));
          break;
        }
        after = r.next_cursor!;
      }
    } catch (err) {
      setError(err);
      setSt((s) => ({ ...s, phase: 'stopped' }));
    }
  };

  const total = st.total ?? 0;
  const processed = st.rotated + st.failed;
  return (
    <Dialog title="Rotate all secrets" onClose={() => st.phase !== 'running' && onClose()}>
      {st.phase === 'ask' ? (
        <p>
          Every secret in vault <strong>{vault}</strong> is re-encrypted under a fresh data key, in batches. Values do not change, and agents keep working. Each
          batch is recorded in the audit log.
        </p>
      ) : (
        <div className="progress-block">
          <label htmlFor="rotate-progress">
            {st.phase === 'done' ? 'Finished' : st.phase === 'stopped' ? 'Stopped' : 'Rotating…'}{' '}
            <span role="status">
              {processed} of {st.total ?? '…'} re-encrypted{st.failed ? `, ${st.failed} failed` : ''}
            </span>
          </label>
          <progress id="rotate-progress" max={Math.max(total, 1)} value={st.phase === 'done' && total === 0 ? 1 : processed} />
          {st.failedNames.length ? (
            <p className="field-error">
              Failed: {st.failedNames.join(', ')}. Run Rotate all again, or rotate these one by one; the audit log has the details.
            </p>
          ) : null}
        </div>
      )}
      <ErrorBox error={error} />
      <div className="form-actions">
        {st.phase === 'running' ? (
          <button type="button" className="btn" onClick={() => (stop.current = true)}>
            Stop after this batch
          </button>
        ) : (
          <button type="button" className="btn" onClick={onClose}>
            {st.phase === 'ask' ? 'Cancel' : 'Close'}
          </button>
        )}
        {st.phase === 'ask' || st.phase === 'stopped' ? (
          <button type="button" className="btn btn-primary" onClick={run} autoFocus>
            {st.phase === 'ask' ? 'Rotate all' : 'Start again'}
          </button>
        ) : null}
      </div>
    </Dialog>
  );
}

// ---- detail

export function SecretDetail({ name }: { name: string }) {
  const { vault } = useSession();
  const s = useAsync<Detail>(() => lk.secret(vault, name), [vault, name]);
  const [revealed, setRevealed] = useState<{ version: number; value: string } | null>(null);
  // which secret is on the page now: a reveal still in flight when it changes must not show its
  // value under the other one's name
  const shown = useRef(`${vault}/${name}`);
  shown.current = `${vault}/${name}`;
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [rollback, setRollback] = useState<number | null>(null);
  const [updating, setUpdating] = useState(false);

  // a revealed value goes away by itself, and with the page
  useEffect(() => {
    if (!revealed) return;
    const t = setTimeout(() => setRevealed(null), REVEAL_FOR_MS);
    return () => clearTimeout(t);
  }, [revealed]);
  useEffect(() => setRevealed(null), [vault, name]);

  const act = async (what: string, fn: () => Promise<void>) => {
    setBusy(what);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  };

  const reveal = (version?: number) =>
    act('reveal', async () => {
      const asked = `${vault}/${name}`;
      const r = await lk.revealSecret(vault, name, version);
      if (shown.current === asked) setRevealed({ version: r.version, value: r.value });
    });

  const d = s.data;
  return (
    <div>
      <p className="crumbs">
        <Link to="/secrets">← Secrets</Link>
      </p>
      <PageHeader title={name} sub={d ? <>Vault <strong>{d.vault}</strong></> : null}>
        <button type="button" className="btn" disabled={!d || !!busy} onClick={() => act('rotate', async () => {
          await lk.rotateSecret(vault, name);
          setNotice('Re-encrypted under a fresh data key; the value did not change.');
          s.reload();
        })}>
          {busy === 'rotate' ? 'Rotating…' : 'Rotate'}
        </button>
        <button type="button" className="btn btn-danger-ghost" disabled={!d} onClick={() => setDeleting(true)}>
          Delete
        </button>
      </PageHeader>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      <ErrorBox error={error} />
      <ErrorBox error={s.error} />
      {s.loading && !d ? <Loading /> : null}
      {d ? (
        <>
          <section className="card" aria-labelledby="value-title">
            <h2 id="value-title">Value</h2>
            {revealed ? (
              <>
                <div className="token-box">
                  <code className="secret-value" data-testid="secret-value">
                    {revealed.value}
                  </code>
                </div>
                <p className="muted small">
                  Version {revealed.version}. Hidden again in a minute or when you leave this page.
                </p>
                <div className="button-row">
                  <button type="button" className="btn" onClick={() => setRevealed(null)}>
                    Hide
                  </button>
                  <CopyButton getText={() => revealed.value} />
                </div>
              </>
            ) : (
              <>
                <p className="masked" aria-label="Value hidden">
                  ••••••••••••••••
                </p>
                <p className="muted small">The value stays on the server until you reveal or copy it. Both are recorded in the audit log as secret.read.</p>
                <div className="button-row">
                  <button type="button" className="btn btn-primary" disabled={!!busy} onClick={() => reveal()}>
                    {busy === 'reveal' ? 'Revealing…' : 'Reveal'}
                  </button>
                  <CopyButton label="Copy without showing" getText={async () => (await lk.revealSecret(vault, name)).value} />
                  <button type="button" className="btn" onClick={() => setUpdating((u) => !u)} aria-expanded={updating}>
                    New version
                  </button>
                </div>
              </>
            )}
            {updating ? (
              <UpdateValueForm
                vault={vault}
                name={name}
                current={d.version}
                onDone={(version) => {
                  setUpdating(false);
                  setNotice(`Saved version ${version}. The earlier versions stay in the history.`);
                  s.reload();
                }}
                onCancel={() => setUpdating(false)}
              />
            ) : null}
          </section>

          <section className="card" aria-labelledby="meta-title">
            <h2 id="meta-title">Details</h2>
            <dl className="facts">
              <dt>Category</dt>
              <dd>
                <CategoryBadge category={d.category} />
              </dd>
              <dt>Preset</dt>
              <dd>{d.preset ?? '—'}</dd>
              <dt>Description</dt>
              <dd>{d.description ?? '—'}</dd>
              <dt>Tags</dt>
              <dd>{d.tags.length ? d.tags.map((t) => <span key={t} className="badge tag">{t}</span>) : '—'}</dd>
              <dt>Current version</dt>
              <dd>{d.version}</dd>
              <dt>Created</dt>
              <dd>
                <Time iso={d.created_at} />
              </dd>
              <dt>Updated</dt>
              <dd>
                <Time iso={d.updated_at} />
              </dd>
              <dt>Last rotated</dt>
              <dd>
                <Time iso={d.last_rotated_at} empty="never" />
              </dd>
            </dl>
          </section>

          <section className="card" aria-labelledby="history-title">
            <h2 id="history-title">History</h2>
            <DataTable columns={['Version', 'Created', 'By', { label: 'Key version', className: 'num' }, 'Re-encrypted']} actions>
              {[...d.versions].sort((a, b) => b.version - a.version).map((ver) => (
                <tr key={ver.version}>
                  <td>
                    v{ver.version} {ver.current ? <span className="badge st st-approved">current</span> : null}
                  </td>
                  <td>
                    <Time iso={ver.created_at} />
                  </td>
                  <td>{ver.created_by}</td>
                  <td className="num">{ver.kek_version}</td>
                  <td>
                    <Time iso={ver.rotated_at} empty="—" />
                  </td>
                  <td className="actions">
                    <button type="button" className="btn btn-small" onClick={() => reveal(ver.version)} aria-label={`Reveal version ${ver.version}`}>
                      Reveal
                    </button>
                    {!ver.current ? (
                      <button type="button" className="btn btn-small" onClick={() => setRollback(ver.version)}>
                        Roll back to v{ver.version}
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </DataTable>
          </section>
        </>
      ) : null}

      {deleting ? (
        <DeleteSecretDialog vault={vault} name={name} onClose={() => setDeleting(false)} onDeleted={() => navigate('/secrets')} />
      ) : null}
      {rollback !== null ? (
        <ConfirmDialog
          title="Roll back"
          confirmLabel={`Roll back to v${rollback}`}
          onClose={() => setRollback(null)}
          onConfirm={async () => {
            const r = await lk.rollbackSecret(vault, name, rollback);
            setNotice(`Version ${r.version} now holds the value of version ${rollback}.`);
            setRevealed(null);
            s.reload();
          }}
        >
          <p>
            A new version of <strong>{name}</strong> is made with the value of version {rollback}. Nothing is deleted.
          </p>
        </ConfirmDialog>
      ) : null}
    </div>
  );
}

function UpdateValueForm({ vault, name, current, onDone, onCancel }: { vault: string; name: string; current: number; onDone: (v: number) => void; onCancel: () => void }) {
  const [err, setErr] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const v = new FormData(e.currentTarget).get('value');
    const value = typeof v === 'string' ? v : '';
    setError(null);
    if (!value) return setErr('Enter the new value.');
    if (byteLength(value) > MAX_VALUE_BYTES) return setErr('This value is larger than 64 KiB.');
    setErr(null);
    setBusy(true);
    try {
      const r = await lk.putSecret(vault, name, { value, cas: current });
      onDone(r.version);
    } catch (e2) {
      setError(e2 instanceof ApiError && e2.code === 'cas_mismatch' ? new Error('Someone saved a newer version meanwhile. Reload and try again.') : e2);
      setBusy(false);
    }
  };
  return (
    <form className="inline-form" onSubmit={submit} onInput={() => setErr(null)} noValidate autoComplete="off">
      <Field label="New value" error={err} hint={`Becomes version ${current + 1}; earlier versions stay in the history.`}>
        {(p) => <input {...p} name="value" type="password" autoComplete="off" spellCheck={false} autoFocus />}
      </Field>
      <FormActions error={error} onCancel={onCancel} busy={busy} label="Save new version" busyLabel="Saving…" />
    </form>
  );
}
