/**
 * Proposals: the list, one proposal, and the approval page the agent's link opens
 * (/approve?token=lk_appr_…). The link only reads; deciding needs a signed-in person, who fills
 * in the values the agent cannot know (uncontrolled password fields, read once on Allow).
 */
import { useState, type FormEvent, type KeyboardEvent, type ReactNode } from 'react';
import { ApiError, lk, type Me, type ProposalService, type ProposalStatus, type ProposalView } from '../api';
import { Link, navigate, useLocation } from '../router';
import { useSession } from '../session';
import { clearErrorOnInput, Empty, ErrorBox, Field, Loading, Notice, PageHeader, StatusBadge, Time, useAsync } from '../ui';
import { DataTable, ListStatus, StatusTabs } from '../list';
import { Login } from './Auth';
import { authSummary } from './Services';

const TABS: Array<{ id: ProposalStatus | ''; label: string }> = [
  { id: 'pending', label: 'Pending' },
  { id: 'approved', label: 'Approved' },
  { id: 'rejected', label: 'Rejected' },
  { id: 'expired', label: 'Expired' },
  { id: '', label: 'All' },
];

export function Proposals() {
  const { vault } = useSession();
  const [tab, setTab] = useState<ProposalStatus | ''>('pending');
  const list = useAsync(() => lk.proposals(vault, tab || undefined), [vault, tab]);
  const items = list.data?.items ?? [];
  return (
    <div>
      <PageHeader title="Proposals" sub={<>Agents propose services and the credentials they need; you review, fill in values and allow. Vault <strong>{vault}</strong>.</>} />
      <StatusTabs label="Show proposals by status" tabs={TABS} value={tab} onChange={setTab} />
      <ListStatus list={list} count={items.length} empty={<Empty title={tab === 'pending' ? 'No proposals waiting' : 'Nothing here'}>An agent's proposal comes with a link; it also shows up here.</Empty>} />
      {items.length ? (
        <DataTable caption="Proposals" columns={['Proposed', 'Agent', 'Message', 'Services', 'Credentials', 'Status']} actions>
          {items.map((p) => (
            <tr key={p.id}>
              <td>
                <Time iso={p.created_at} />
              </td>
              <td>
                <strong>{p.agent ?? '—'}</strong>
              </td>
              <td className="clamp-cell">{p.message ?? <span className="muted">—</span>}</td>
              <td>{p.services.length ? p.services.join(', ') : <span className="muted">—</span>}</td>
              <td>{p.credentials.length ? p.credentials.map((c) => `${c.action === 'delete' ? '−' : '+'}${c.key}`).join(', ') : <span className="muted">—</span>}</td>
              <td>
                <StatusBadge status={p.status} />
              </td>
              <td className="actions">
                <Link to={`/proposals/${encodeURIComponent(p.id)}`} className="btn btn-small">
                  {p.status === 'pending' ? 'Review' : 'View'}
                </Link>
              </td>
            </tr>
          ))}
        </DataTable>
      ) : null}
    </div>
  );
}

export function ProposalDetail({ id }: { id: string }) {
  const { vault } = useSession();
  const p = useAsync(() => lk.proposal(vault, id), [vault, id]);
  return (
    <div>
      <p className="crumbs">
        <Link to="/proposals">← Proposals</Link>
      </p>
      <ErrorBox error={p.error} />
      {p.loading && !p.data ? <Loading /> : null}
      {p.data ? <ProposalReview p={p.data} canDecide onDecided={p.reload} /> : null}
    </div>
  );
}

export function ApprovalPage({ me, onLogin }: { me: Me | null; onLogin: (m: Me) => void }) {
  const { query } = useLocation();
  const token = query.get('token') ?? '';
  const p = useAsync(() => (token ? lk.proposalByToken(token) : Promise.reject(new Error('This link has no approval token. Open the link the agent gave you.'))), [token]);
  const err = p.error instanceof ApiError && p.error.status === 404 ? new Error('No proposal has this approval link. Check that the link is complete.') : p.error;
  return (
    <div className="approval">
      <ErrorBox error={err} />
      {p.loading && !p.data ? <Loading what="Opening the proposal" /> : null}
      {p.data ? (
        <ProposalReview
          p={p.data}
          canDecide={!!me}
          onDecided={p.reload}
          loginSlot={me ? null : <Login message="Log in to decide on this proposal. You can review it first." onLogin={onLogin} />}
        />
      ) : null}
      {!p.data && !p.loading && me ? (
        <p>
          <button type="button" className="btn" onClick={() => navigate('/proposals')}>
            Go to Proposals
          </button>
        </p>
      ) : null}
    </div>
  );
}

function ServiceCard({ s }: { s: ProposalService }) {
  return (
    <li className={`svc svc-${s.change}`}>
      <div className="svc-head">
        <span className={`badge chg chg-${s.change}`}>{s.change === 'add' ? 'new' : s.change === 'update' ? 'changed' : 'unchanged'}</span> <strong>{s.name}</strong> →{' '}
        <code>{s.host}</code>
      </div>
      <dl className="kv">
        <div>
          <dt>auth</dt>
          <dd>
            <code>{authSummary(s.auth)}</code>
          </dd>
        </div>
        <div>
          <dt>methods</dt>
          <dd>{s.methods?.length ? s.methods.join(' ') : 'any'}</dd>
        </div>
        {s.path_prefixes?.length ? (
          <div>
            <dt>paths</dt>
            <dd>{s.path_prefixes.join(', ')}</dd>
          </div>
        ) : null}
        {s.quota_per_minute ? (
          <div>
            <dt>quota</dt>
            <dd>{s.quota_per_minute}/min</dd>
          </div>
        ) : null}
      </dl>
      {s.changes ? (
        <table className="table diff">
          <caption>Changes to the current service</caption>
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Now</th>
              <th scope="col">Proposed</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(s.changes).map(([k, c]) => (
              <tr key={k}>
                <th scope="row">{k}</th>
                <td className="diff-from">
                  <code>{JSON.stringify(c.from)}</code>
                </td>
                <td className="diff-to">
                  <code>{JSON.stringify(c.to)}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </li>
  );
}

function ProposalReview({ p, canDecide, onDecided, loginSlot }: { p: ProposalView; canDecide: boolean; onDecided: () => void; loginSlot?: ReactNode }) {
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<'approve' | 'reject' | null>(null);
  const [rejecting, setRejecting] = useState(false);
  const [reason, setReason] = useState('');
  const [notice, setNotice] = useState<string | null>(null);
  const pending = p.status === 'pending';
  const setSlots = p.credentials.filter((c) => c.action === 'set');

  // Enter in a value field does not submit: approving is a click on Allow, not a key in a field
  const noEnterSubmit = (e: KeyboardEvent<HTMLFormElement>) => {
    if (e.key === 'Enter' && e.target instanceof HTMLInputElement) e.preventDefault();
  };

  const approve = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const fd = new FormData(e.currentTarget);
    const credentials: Record<string, string> = {};
    const next: Record<string, string> = {};
    for (const c of setSlots) {
      const v = fd.get(`cred:${c.key}`);
      const value = typeof v === 'string' ? v : '';
      if (value) credentials[c.key] = value;
      else if (c.missing_value) next[c.key] = `Enter a value for ${c.key}: it does not exist yet and the agent supplied none.`;
    }
    setErrs(next);
    setError(null);
    if (Object.keys(next).length) return;
    setBusy('approve');
    try {
      const r = await lk.approveProposal(p.vault, p.id, credentials);
      const a = r.applied;
      setNotice(
        `Allowed. ${[a.secrets_set.length ? `Set ${a.secrets_set.join(', ')}` : '', a.secrets_deleted.length ? `deleted ${a.secrets_deleted.join(', ')}` : '', a.services.length ? `services ${a.services.join(', ')}` : '', a.grants.length ? `${p.agent} may now use them` : ''].filter(Boolean).join('; ')}.`,
      );
      onDecided();
    } catch (err) {
      setBusy(null);
      if (err instanceof ApiError && err.field?.startsWith('credentials.')) setErrs({ [err.field.slice(12)]: err.message });
      else setError(err);
    }
  };

  const reject = async () => {
    setBusy('reject');
    setError(null);
    try {
      await lk.rejectProposal(p.vault, p.id, reason.trim() || undefined);
      setNotice('Denied. Nothing was changed.');
      setRejecting(false);
      onDecided();
    } catch (err) {
      setError(err);
      setBusy(null);
    }
  };

  return (
    <div>
      <PageHeader
        title={`Proposal from ${p.agent ?? 'an agent'}`}
        sub={
          <>
            Vault <strong>{p.vault}</strong> · proposed <Time iso={p.created_at} /> · {pending ? <>expires <Time iso={p.expires_at} /></> : <>decided by {p.decided_by ?? '—'} <Time iso={p.decided_at} /></>}
          </>
        }
      >
        <StatusBadge status={p.status} />
      </PageHeader>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      {p.decision_reason ? <div className="alert alert-info">Reason: {p.decision_reason}</div> : null}

      <section className="card" aria-labelledby="pm-title">
        <h2 id="pm-title">The agent's message</h2>
        {p.message ? <blockquote className="quote">{p.message}</blockquote> : <p className="muted">No message.</p>}
      </section>

      {p.warnings.length ? (
        <section className="alert alert-warn" role="alert" aria-labelledby="pw-title">
          <h2 id="pw-title" className="alert-title">
            New hosts for existing credentials
          </h2>
          <ul>
            {p.warnings.map((w, i) => (
              <li key={i}>
                <code>{w.credential}</code> would be sent to <strong>{w.new_host}</strong> by service <strong>{w.service}</strong>
                {w.current_hosts.length ? <> (today it goes only to {w.current_hosts.join(', ')})</> : <> (no service sends it anywhere today)</>}.
              </li>
            ))}
          </ul>
        </section>
      ) : null}

      {p.services.length ? (
        <section className="card" aria-labelledby="ps-title">
          <h2 id="ps-title">Services</h2>
          <ul className="svc-list">
            {p.services.map((s) => (
              <ServiceCard key={s.name} s={s} />
            ))}
          </ul>
        </section>
      ) : null}

      <form onSubmit={approve} onKeyDown={noEnterSubmit} onInput={clearErrorOnInput(setErrs)} noValidate autoComplete="off">
        {p.credentials.length ? (
          <section className="card" aria-labelledby="pc-title">
            <h2 id="pc-title">Credentials</h2>
            <ul className="slot-list">
              {p.credentials.map((c) => (
                <li key={c.key} className="slot">
                  <div className="slot-head">
                    <span className={`badge chg ${c.action === 'delete' ? 'chg-delete' : 'chg-add'}`}>{c.action === 'delete' ? 'delete' : 'set'}</span> <code>{c.key}</code>
                    {c.description ? <span className="muted"> — {c.description}</span> : null}
                  </div>
                  {c.obtain || c.obtain_instructions ? (
                    <p className="small">
                      {c.obtain ? (
                        <>
                          Get it at{' '}
                          <a href={c.obtain} target="_blank" rel="noopener noreferrer">
                            {c.obtain}
                          </a>
                          .{' '}
                        </>
                      ) : null}
                      {c.obtain_instructions}
                    </p>
                  ) : null}
                  {c.action === 'delete' ? (
                    <p className="small muted">{c.exists ? 'This credential is deleted when you allow.' : 'It does not exist; nothing to delete.'}</p>
                  ) : pending && canDecide ? (
                    <Field
                      label={`Value for ${c.key}`}
                      optional={!c.missing_value}
                      error={errs[c.key]}
                      hint={c.has_value ? 'The agent supplied a value; leave empty to use it, or type one to replace it.' : c.exists ? 'It exists already; leave empty to keep the current value.' : 'Needed: it does not exist yet.'}
                    >
                      {(fp) => <input {...fp} name={`cred:${c.key}`} type="password" autoComplete="off" spellCheck={false} />}
                    </Field>
                  ) : (
                    <p className="small muted">{c.has_value ? 'The agent supplied a value.' : c.exists ? 'Exists already.' : 'A value is needed.'}</p>
                  )}
                </li>
              ))}
            </ul>
          </section>
        ) : null}

        {pending ? (
          canDecide ? (
            <section className="card decide" aria-labelledby="pd-title">
              <h2 id="pd-title">Decide</h2>
              <p className="small muted">
                Allowing applies every change above in one step and lets {p.agent ?? 'the agent'} use the proposed services. The agent never sees the values.
              </p>
              <ErrorBox error={error} />
              {rejecting ? (
                <div className="inline-form">
                  <Field label="Reason for denying" optional>
                    {(fp) => <textarea {...fp} value={reason} onChange={(e) => setReason(e.target.value)} rows={2} maxLength={1000} autoFocus />}
                  </Field>
                  <div className="form-actions">
                    <button type="button" className="btn" onClick={() => setRejecting(false)}>
                      Cancel
                    </button>
                    <button type="button" className="btn btn-danger" onClick={reject} disabled={!!busy}>
                      {busy === 'reject' ? 'Denying…' : 'Deny proposal'}
                    </button>
                  </div>
                </div>
              ) : (
                <div className="form-actions">
                  <button type="button" className="btn btn-danger-ghost" onClick={() => setRejecting(true)} disabled={!!busy}>
                    Deny
                  </button>
                  <button type="submit" className="btn btn-primary" disabled={!!busy}>
                    {busy === 'approve' ? 'Allowing…' : 'Allow'}
                  </button>
                </div>
              )}
            </section>
          ) : null
        ) : null}
      </form>
      {pending && !canDecide ? loginSlot : null}
    </div>
  );
}
