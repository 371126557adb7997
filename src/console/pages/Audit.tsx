/** Audit log: search and filters, newest first with cursor pages, outcome colours, chain verification. */
import { useState, type FormEvent } from 'react';
import { AUDIT_ACTIONS, lk, type AuditEvent } from '../api';
import { useSession } from '../session';
import { Empty, ErrorBox, Field, PageHeader, Pager, Time, useAsync, useCursorPages } from '../ui';
import { DataTable, ListStatus } from '../list';

const PAGE = 50;
const GROUPS = [...new Set(AUDIT_ACTIONS.map((a) => a.split('.')[0] + '.'))];
const RANGES: Array<{ id: string; label: string; ms?: number }> = [
  { id: '', label: 'Any time' },
  { id: '1h', label: 'Last hour', ms: 3600_000 },
  { id: '24h', label: 'Last 24 hours', ms: 86_400_000 },
  { id: '7d', label: 'Last 7 days', ms: 7 * 86_400_000 },
  { id: '30d', label: 'Last 30 days', ms: 30 * 86_400_000 },
  { id: 'custom', label: 'Custom…' },
];

interface Filters {
  q: string;
  action: string;
  actor: string;
  secret: string;
  outcome: string;
  vault: string;
  range: string;
  since: string;
  until: string;
}

const EMPTY: Filters = { q: '', action: '', actor: '', secret: '', outcome: '', vault: '', range: '', since: '', until: '' };

/** datetime-local (the browser's local time) to ISO */
function localToIso(v: string): string | undefined {
  if (!v) return undefined;
  const t = new Date(v);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

function timeBounds(f: Filters, now: number): { since?: string; until?: string } {
  if (f.range === 'custom') return { since: localToIso(f.since), until: localToIso(f.until) };
  const r = RANGES.find((x) => x.id === f.range);
  return r?.ms ? { since: new Date(now - r.ms).toISOString() } : {};
}

function detailText(v: unknown): string {
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

export function Audit() {
  const { vaults } = useSession();
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [applied, setApplied] = useState<{ f: Filters; at: number }>({ f: EMPTY, at: Date.now() });
  const pages = useCursorPages();
  const [verifyTick, setVerifyTick] = useState(0);

  const f = applied.f;
  const list = useAsync(() => {
    const { since, until } = timeBounds(f, applied.at);
    return lk.audit({ q: f.q, action: f.action, actor: f.actor, secret: f.secret, outcome: f.outcome, vault: f.vault, since, until, limit: PAGE, cursor: pages.cursor });
  }, [applied, pages.cursor]);
  const verify = useAsync(() => lk.verifyAudit(), [verifyTick]);

  const set = (k: keyof Filters) => (e: { target: { value: string } }) => setDraft((d) => ({ ...d, [k]: e.target.value }));
  const apply = (e?: FormEvent) => {
    e?.preventDefault();
    pages.reset();
    setApplied({ f: draft, at: Date.now() });
  };
  const reset = () => {
    setDraft(EMPTY);
    pages.reset();
    setApplied({ f: EMPTY, at: Date.now() });
  };
  const items = list.data?.items ?? [];
  const filtered = JSON.stringify(f) !== JSON.stringify(EMPTY);

  return (
    <div>
      <PageHeader title="Audit log" sub="Every read, write, use, grant, proposal, agent and login event, newest first. Events form a keyed hash chain." />

      <section className={`chain ${verify.data ? (verify.data.ok ? 'chain-ok' : 'chain-bad') : ''}`} aria-live="polite" aria-labelledby="chain-title">
        <h2 id="chain-title" className="sr-only">
          Chain verification
        </h2>
        {verify.loading && !verify.data ? <span>Verifying the hash chain…</span> : null}
        {verify.error ? <ErrorBox error={verify.error} title="Chain verification:" /> : null}
        {verify.data ? (
          verify.data.ok ? (
            <span>
              <strong>Chain verified.</strong> {verify.data.checked} events checked, head #{verify.data.head.seq}{' '}
              <code title={verify.data.head.hash}>{verify.data.head.hash.slice(0, 12)}…</code>
              {verify.data.checkpoint ? (verify.data.checkpoint.ok ? '; matches the checkpoint' : `; checkpoint: ${verify.data.checkpoint.reason}`) : ''}
            </span>
          ) : (
            <span>
              <strong>Chain broken</strong>
              {verify.data.first_bad ? ` at event #${verify.data.first_bad.seq}: ${verify.data.first_bad.reason}` : ''}. The log was altered outside Latchkey.
            </span>
          )
        ) : null}
        <button type="button" className="btn btn-small" onClick={() => setVerifyTick((t) => t + 1)} disabled={verify.loading}>
          Verify again
        </button>
      </section>

      <form className="filters" onSubmit={apply} role="search" aria-label="Filter audit events">
        <Field label="Search" className="grow">
          {(p) => <input {...p} type="search" value={draft.q} onChange={set('q')} placeholder="Any text: actor, target, details, IP" />}
        </Field>
        <Field label="Action">
          {(p) => (
            <select {...p} value={draft.action} onChange={set('action')}>
              <option value="">All actions</option>
              <optgroup label="Groups">
                {GROUPS.map((g) => (
                  <option key={g} value={g}>
                    {g}*
                  </option>
                ))}
              </optgroup>
              <optgroup label="Actions">
                {AUDIT_ACTIONS.map((a) => (
                  <option key={a} value={a}>
                    {a}
                  </option>
                ))}
              </optgroup>
            </select>
          )}
        </Field>
        <Field label="Actor">{(p) => <input {...p} value={draft.actor} onChange={set('actor')} placeholder="user:… agent:… system" spellCheck={false} />}</Field>
        <Field label="Secret">{(p) => <input {...p} value={draft.secret} onChange={set('secret')} placeholder="STRIPE_KEY" spellCheck={false} />}</Field>
        <Field label="Outcome">
          {(p) => (
            <select {...p} value={draft.outcome} onChange={set('outcome')}>
              <option value="">Any</option>
              <option value="ok">ok</option>
              <option value="denied">denied</option>
              <option value="error">error</option>
            </select>
          )}
        </Field>
        <Field label="Vault">
          {(p) => (
            <select {...p} value={draft.vault} onChange={set('vault')}>
              <option value="">All vaults</option>
              {vaults.map((v) => (
                <option key={v.name} value={v.name}>
                  {v.name}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Time">
          {(p) => (
            <select {...p} value={draft.range} onChange={set('range')}>
              {RANGES.map((r) => (
                <option key={r.id} value={r.id}>
                  {r.label}
                </option>
              ))}
            </select>
          )}
        </Field>
        {draft.range === 'custom' ? (
          <>
            <Field label="From">{(p) => <input {...p} type="datetime-local" value={draft.since} onChange={set('since')} />}</Field>
            <Field label="To">{(p) => <input {...p} type="datetime-local" value={draft.until} onChange={set('until')} />}</Field>
          </>
        ) : null}
        <div className="filter-actions">
          <button type="submit" className="btn btn-primary">
            Apply
          </button>
          <button type="button" className="btn" onClick={reset}>
            Reset
          </button>
        </div>
      </form>

      <ListStatus list={list} count={items.length} empty={<Empty title={filtered ? 'No event matches these filters' : 'No events yet'} />} />
      {items.length ? (
        <DataTable caption="Audit events, newest first" className="audit-table" columns={['Time', 'Actor', 'Action', 'Vault', 'Target', 'Outcome', 'Details']}>
          {items.map((ev) => (
            <AuditRow key={ev.seq} ev={ev} />
          ))}
        </DataTable>
      ) : null}
      <Pager label="Audit" page={pages.page} nextCursor={list.data?.next_cursor} onPrev={pages.prev} onNext={pages.next} />
    </div>
  );
}

function AuditRow({ ev }: { ev: AuditEvent }) {
  const entries = Object.entries(ev.details ?? {});
  return (
    <tr className={`outcome-${ev.outcome}`} data-action={ev.action}>
      <td className="nowrap">
        <Time iso={ev.ts} />
        <div className="muted small">#{ev.seq}</div>
      </td>
      <td className="break">{ev.actor}</td>
      <td>
        <code className="action">{ev.action}</code>
      </td>
      <td>{ev.vault ?? <span className="muted">—</span>}</td>
      <td className="break">{ev.target ?? <span className="muted">—</span>}</td>
      <td>
        <span className={`badge out out-${ev.outcome}`}>{ev.outcome}</span>
      </td>
      <td className="details-cell">
        {entries.length || ev.ip ? (
          <details>
            <summary>
              {entries
                .slice(0, 2)
                .map(([k, v]) => `${k}: ${detailText(v)}`)
                .join(' · ')
                .slice(0, 80) || 'more'}
            </summary>
            <dl className="kv">
              {entries.map(([k, v]) => (
                <div key={k}>
                  <dt>{k}</dt>
                  <dd>{detailText(v)}</dd>
                </div>
              ))}
              {ev.ip ? (
                <div>
                  <dt>ip</dt>
                  <dd>{ev.ip}</dd>
                </div>
              ) : null}
              {ev.request_id ? (
                <div>
                  <dt>request</dt>
                  <dd>{ev.request_id}</dd>
                </div>
              ) : null}
            </dl>
          </details>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
    </tr>
  );
}
