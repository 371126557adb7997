/** Access requests (grants): approve with an expiry, deny with a reason, revoke; or grant directly. */
import { useState, type FormEvent } from 'react';
import { ApiError, lk, type Grant, type GrantStatus } from '../api';
import { useSession } from '../session';
import { ConfirmDialog, Dialog, Empty, ErrorBox, Field, FormActions, Notice, PageHeader, StatusBadge, Time, useAsync } from '../ui';
import { DataTable, ListStatus, StatusTabs } from '../list';

const TABS: Array<{ id: GrantStatus | ''; label: string }> = [
  { id: 'pending', label: 'Pending' },
  { id: 'approved', label: 'Approved' },
  { id: 'denied', label: 'Denied' },
  { id: 'revoked', label: 'Revoked' },
  { id: 'expired', label: 'Expired' },
  { id: '', label: 'All' },
];

const EXPIRIES = [
  { id: '', label: 'No expiry' },
  { id: '1h', label: '1 hour' },
  { id: '8h', label: '8 hours' },
  { id: '1d', label: '1 day' },
  { id: '7d', label: '7 days' },
  { id: '30d', label: '30 days' },
  { id: 'custom', label: 'Until a date…' },
];

function grantTarget(g: Grant) {
  return g.kind === 'service' ? g.service : g.secret;
}

function ExpiryPicker({ value, custom, onChange, onCustom }: { value: string; custom: string; onChange: (v: string) => void; onCustom: (v: string) => void }) {
  return (
    <>
      <Field label="Expires" hint="The grant ends by itself then; you can revoke it earlier.">
        {(p) => (
          <select {...p} value={value} onChange={(e) => onChange(e.target.value)}>
            {EXPIRIES.map((x) => (
              <option key={x.id} value={x.id}>
                {x.label}
              </option>
            ))}
          </select>
        )}
      </Field>
      {value === 'custom' ? <Field label="Expires at">{(p) => <input {...p} type="datetime-local" value={custom} onChange={(e) => onCustom(e.target.value)} required />}</Field> : null}
    </>
  );
}

function expiryValue(value: string, custom: string): string | undefined {
  if (value !== 'custom') return value || undefined;
  const t = new Date(custom);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

export function AccessRequests() {
  const { vault } = useSession();
  const [tab, setTab] = useState<GrantStatus | ''>('pending');
  const list = useAsync(() => lk.grants(vault, tab || undefined), [vault, tab]);
  const [approving, setApproving] = useState<Grant | null>(null);
  const [denying, setDenying] = useState<Grant | null>(null);
  const [revoking, setRevoking] = useState<Grant | null>(null);
  const [granting, setGranting] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const items = list.data?.items ?? [];
  const done = (msg: string) => {
    setNotice(msg);
    list.reload();
  };

  return (
    <div>
      <PageHeader title="Access requests" sub={<>Agents ask to use a service or read a secret; a person decides. Vault <strong>{vault}</strong>.</>}>
        <button type="button" className="btn" onClick={() => setGranting(true)}>
          Grant directly
        </button>
      </PageHeader>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      <StatusTabs label="Show grants by status" tabs={TABS} value={tab} onChange={setTab} />
      <ListStatus
        list={list}
        count={items.length}
        empty={
          <Empty title={tab === 'pending' ? 'No pending requests' : 'Nothing here'}>
            {tab === 'pending' ? 'When an agent asks for access, its request shows up here.' : null}
          </Empty>
        }
      />
      {items.length ? (
        <DataTable caption="Grants" columns={['Agent', 'Wants', 'Reason', 'Status', 'Asked', 'Decided', 'Expires']} actions>
          {items.map((g) => (
            <tr key={g.id} data-grant={g.id}>
              <td>
                <strong>{g.agent ?? '—'}</strong>
              </td>
              <td>
                <span className={`badge mode mode-${g.mode}`}>{g.mode}</span> {g.kind} <code>{grantTarget(g)}</code>
              </td>
              <td className="clamp-cell">{g.reason ?? <span className="muted">—</span>}</td>
              <td>
                <StatusBadge status={g.status} />
              </td>
              <td>
                <Time iso={g.created_at} />
              </td>
              <td>
                {g.decided_by ? (
                  <>
                    <span className="break">{g.decided_by}</span>
                    {g.decision_reason ? <div className="muted small">“{g.decision_reason}”</div> : null}
                  </>
                ) : (
                  <span className="muted">—</span>
                )}
              </td>
              <td>
                <Time iso={g.expires_at} empty={g.status === 'approved' ? 'never' : '—'} />
              </td>
              <td className="actions">
                {g.status === 'pending' ? (
                  <>
                    <button type="button" className="btn btn-small btn-primary" onClick={() => setApproving(g)} aria-label={`Approve ${g.agent}'s request for ${grantTarget(g)}`}>
                      Approve
                    </button>
                    <button type="button" className="btn btn-small" onClick={() => setDenying(g)} aria-label={`Deny ${g.agent}'s request for ${grantTarget(g)}`}>
                      Deny
                    </button>
                  </>
                ) : null}
                {g.status === 'approved' ? (
                  <button type="button" className="btn btn-small btn-danger-ghost" onClick={() => setRevoking(g)} aria-label={`Revoke ${g.agent}'s grant for ${grantTarget(g)}`}>
                    Revoke
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </DataTable>
      ) : null}

      {approving ? <ApproveDialog vault={vault} g={approving} onClose={() => setApproving(null)} onDone={() => done(`Approved ${approving.agent}'s ${approving.mode} of ${grantTarget(approving)}.`)} /> : null}
      {denying ? <DenyDialog vault={vault} g={denying} onClose={() => setDenying(null)} onDone={() => done(`Denied ${denying.agent}'s request for ${grantTarget(denying)}.`)} /> : null}
      {revoking ? (
        <ConfirmDialog
          title="Revoke grant"
          confirmLabel="Revoke"
          danger
          onClose={() => setRevoking(null)}
          onConfirm={async () => {
            await lk.revokeGrant(vault, revoking.id);
            done(`Revoked ${revoking.agent}'s grant for ${grantTarget(revoking)}.`);
          }}
        >
          <p>
            <strong>{revoking.agent}</strong> loses {revoking.mode} of {revoking.kind} <code>{grantTarget(revoking)}</code> on its very next request.
          </p>
        </ConfirmDialog>
      ) : null}
      {granting ? <GrantDialog vault={vault} onClose={() => setGranting(false)} onDone={(g) => done(`Granted ${g.agent} ${g.mode} of ${grantTarget(g)}.`)} /> : null}
    </div>
  );
}

function ApproveDialog({ vault, g, onClose, onDone }: { vault: string; g: Grant; onClose: () => void; onDone: () => void }) {
  const [expiry, setExpiry] = useState('');
  const [custom, setCustom] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const expires = expiryValue(expiry, custom);
    if (expiry === 'custom' && !expires) return setError(new Error('Choose the date and time the grant ends.'));
    setBusy(true);
    setError(null);
    try {
      await lk.approveGrant(vault, g.id, expires);
      onDone();
      onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <Dialog title="Approve access" onClose={onClose}>
      <form onSubmit={submit}>
        <p>
          <strong>{g.agent}</strong> asks to <strong>{g.mode === 'read' ? 'read the value of' : 'use'}</strong> {g.kind} <code>{grantTarget(g)}</code>.
        </p>
        {g.reason ? <blockquote className="quote">{g.reason}</blockquote> : null}
        {g.mode === 'read' ? (
          <div className="alert alert-warn">A read grant hands the raw value to the agent. Prefer use (injection through the proxy) where the agent only calls an API.</div>
        ) : null}
        <ExpiryPicker value={expiry} custom={custom} onChange={setExpiry} onCustom={setCustom} />
        <FormActions error={error} onCancel={onClose} busy={busy} label="Approve" busyLabel="Approving…" />
      </form>
    </Dialog>
  );
}

function DenyDialog({ vault, g, onClose, onDone }: { vault: string; g: Grant; onClose: () => void; onDone: () => void }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await lk.denyGrant(vault, g.id, reason.trim() || undefined);
      onDone();
      onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <Dialog title="Deny access" onClose={onClose}>
      <form onSubmit={submit}>
        <p>
          Deny <strong>{g.agent}</strong> {g.mode} of {g.kind} <code>{grantTarget(g)}</code>.
        </p>
        <Field label="Reason" optional hint="The agent sees it when it checks its request.">
          {(p) => <textarea {...p} value={reason} onChange={(e) => setReason(e.target.value)} maxLength={1000} rows={3} autoFocus />}
        </Field>
        <FormActions error={error} onCancel={onClose} busy={busy} label="Deny" busyLabel="Denying…" danger />
      </form>
    </Dialog>
  );
}

function GrantDialog({ vault, onClose, onDone }: { vault: string; onClose: () => void; onDone: (g: Grant) => void }) {
  const members = useAsync(() => lk.members(vault), [vault]);
  const services = useAsync(() => lk.services(vault), [vault]);
  const secrets = useAsync(() => lk.secrets(vault, { limit: 1000 }), [vault]);
  const agents = (members.data?.items ?? []).filter((m) => m.kind === 'agent').map((m) => m.name!);
  const [agent, setAgent] = useState('');
  const [kind, setKind] = useState<'service' | 'secret'>('service');
  const [target, setTarget] = useState('');
  const [mode, setMode] = useState<'use' | 'read'>('use');
  const [expiry, setExpiry] = useState('');
  const [custom, setCustom] = useState('');
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const targets = kind === 'service' ? (services.data?.items ?? []).map((s) => s.name) : (secrets.data?.items ?? []).map((s) => s.name);
  const chosenAgent = agent || agents[0] || '';
  const chosenTarget = target || targets[0] || '';

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!chosenAgent || !chosenTarget) return setError(new Error('Choose an agent and what it may access.'));
    const expires = expiryValue(expiry, custom);
    if (expiry === 'custom' && !expires) return setError(new Error('Choose the date and time the grant ends.'));
    setBusy(true);
    setError(null);
    try {
      const g = await lk.grant(vault, { agent: chosenAgent, [kind]: chosenTarget, mode: kind === 'service' ? 'use' : mode, ...(expires ? { expires } : {}), ...(reason.trim() ? { reason: reason.trim() } : {}) });
      onDone(g);
      onClose();
    } catch (err) {
      setError(err instanceof ApiError && err.field === 'agent' ? new Error(err.message) : err);
      setBusy(false);
    }
  };
  return (
    <Dialog title="Grant access directly" onClose={onClose}>
      <form onSubmit={submit}>
        <ErrorBox error={members.error} />
        {members.data && !agents.length ? <div className="alert alert-info">No agent is a member of vault {vault} yet. Create one on the Agents page.</div> : null}
        <Field label="Agent">
          {(p) => (
            <select {...p} value={chosenAgent} onChange={(e) => setAgent(e.target.value)}>
              {agents.map((a) => (
                <option key={a} value={a}>
                  {a}
                </option>
              ))}
            </select>
          )}
        </Field>
        <fieldset className="segmented">
          <legend>Access to</legend>
          <label className={kind === 'service' ? 'seg seg-on' : 'seg'}>
            <input type="radio" name="kind" checked={kind === 'service'} onChange={() => { setKind('service'); setTarget(''); setMode('use'); }} /> A service (use through the proxy)
          </label>
          <label className={kind === 'secret' ? 'seg seg-on' : 'seg'}>
            <input type="radio" name="kind" checked={kind === 'secret'} onChange={() => { setKind('secret'); setTarget(''); }} /> A secret
          </label>
        </fieldset>
        <Field label={kind === 'service' ? 'Service' : 'Secret'}>
          {(p) => (
            <select {...p} value={chosenTarget} onChange={(e) => setTarget(e.target.value)}>
              {targets.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          )}
        </Field>
        {kind === 'secret' ? (
          <Field label="Mode" hint="read hands the raw value to the agent">
            {(p) => (
              <select {...p} value={mode} onChange={(e) => setMode(e.target.value as 'use' | 'read')}>
                <option value="use">use</option>
                <option value="read">read</option>
              </select>
            )}
          </Field>
        ) : null}
        <ExpiryPicker value={expiry} custom={custom} onChange={setExpiry} onCustom={setCustom} />
        <Field label="Note" optional>
          {(p) => <input {...p} value={reason} onChange={(e) => setReason(e.target.value)} maxLength={1000} />}
        </Field>
        <FormActions error={error} onCancel={onClose} busy={busy} disabled={!chosenAgent || !chosenTarget} label="Grant" busyLabel="Granting…" />
      </form>
    </Dialog>
  );
}
