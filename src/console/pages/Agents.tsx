/** Agents: create (token shown once), rotate the token (shown once), revoke. */
import { useState, type FormEvent } from 'react';
import { ApiError, lk, type Agent } from '../api';
import { useSession } from '../session';
import { clearErrorOnInput, ConfirmDialog, Empty, Field, FormActions, Notice, OnceTokenDialog, PageHeader, StatusBadge, Time, useAsync } from '../ui';
import { DataTable, ListStatus } from '../list';

const AGENT_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export function Agents() {
  const { vault, vaults } = useSession();
  const list = useAsync(() => lk.agents(), []);
  const [creating, setCreating] = useState(false);
  const [shown, setShown] = useState<{ title: string; token: string } | null>(null);
  const [confirm, setConfirm] = useState<{ kind: 'revoke' | 'rotate'; agent: Agent } | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const items = list.data?.items ?? [];

  return (
    <div>
      <PageHeader title="Agents" sub="Agents use credentials through the proxy and ask for access; they hold nothing until a person grants it.">
        <button type="button" className="btn btn-primary" onClick={() => setCreating((c) => !c)} aria-expanded={creating}>
          Create agent
        </button>
      </PageHeader>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      {creating ? (
        <CreateAgentForm
          vault={vault}
          vaults={vaults.map((v) => v.name)}
          onCancel={() => setCreating(false)}
          onCreated={(a) => {
            setCreating(false);
            setShown({ title: `Token for agent ${a.name}`, token: a.token });
            list.reload();
          }}
        />
      ) : null}
      <ListStatus list={list} count={items.length} empty={<Empty title="No agents yet">Create one to give an AI agent its own token, scoped to the vaults you choose.</Empty>} />
      {items.length ? (
        <DataTable caption="Agents" columns={['Name', 'Status', 'Vaults', 'Created', 'By']} actions>
          {items.map((a) => (
            <tr key={a.name}>
              <td>
                <strong>{a.name}</strong>
                {a.description ? <div className="muted small clamp">{a.description}</div> : null}
              </td>
              <td>
                <StatusBadge status={a.status} />
                {a.revoked_at ? (
                  <div className="muted small">
                    <Time iso={a.revoked_at} />
                  </div>
                ) : null}
              </td>
              <td>{a.vaults?.length ? a.vaults.join(', ') : <span className="muted">none</span>}</td>
              <td>
                <Time iso={a.created_at} />
              </td>
              <td className="break">{a.created_by}</td>
              <td className="actions">
                {a.status === 'active' ? (
                  <>
                    <button type="button" className="btn btn-small" onClick={() => setConfirm({ kind: 'rotate', agent: a })} aria-label={`Rotate the token of ${a.name}`}>
                      Rotate token
                    </button>
                    <button type="button" className="btn btn-small btn-danger-ghost" onClick={() => setConfirm({ kind: 'revoke', agent: a })} aria-label={`Revoke ${a.name}`}>
                      Revoke
                    </button>
                  </>
                ) : null}
              </td>
            </tr>
          ))}
        </DataTable>
      ) : null}

      {confirm?.kind === 'revoke' ? (
        <ConfirmDialog
          title="Revoke agent"
          confirmLabel="Revoke"
          danger
          onClose={() => setConfirm(null)}
          onConfirm={async () => {
            await lk.revokeAgent(confirm.agent.name);
            setNotice(`Revoked ${confirm.agent.name}. Its tokens stopped working.`);
            list.reload();
          }}
        >
          <p>
            <strong>{confirm.agent.name}</strong> and all its tokens and sessions stop working on their next request, including proxy connections already open.
          </p>
        </ConfirmDialog>
      ) : null}
      {confirm?.kind === 'rotate' ? (
        <ConfirmDialog
          title="Rotate agent token"
          confirmLabel="Rotate token"
          onClose={() => setConfirm(null)}
          onConfirm={async () => {
            const r = await lk.rotateAgentToken(confirm.agent.name);
            setShown({ title: `New token for agent ${r.name}`, token: r.token });
          }}
        >
          <p>
            A new token is made for <strong>{confirm.agent.name}</strong> and the old one stops working. Update the agent's configuration with the new token.
          </p>
        </ConfirmDialog>
      ) : null}
      {shown ? (
        <OnceTokenDialog
          title={shown.title}
          token={shown.token}
          note={<>Give it to the agent, for example as <code>LATCHKEY_TOKEN</code>, or as the API key of an SDK pointed at the base-URL proxy.</>}
          onClose={() => setShown(null)}
        />
      ) : null}
    </div>
  );
}

function CreateAgentForm({ vault, vaults, onCreated, onCancel }: { vault: string; vaults: string[]; onCreated: (a: Agent & { token: string }) => void; onCancel: () => void }) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [chosen, setChosen] = useState<string[]>([vault]);
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const all = vaults.length ? vaults : [vault];

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const next: Record<string, string> = {};
    if (!AGENT_NAME_RE.test(name)) next.name = 'Lower-case letters, digits and . _ -, starting with a letter or digit (up to 63).';
    setErrs(next);
    setError(null);
    if (Object.keys(next).length) return;
    setBusy(true);
    try {
      onCreated(await lk.createAgent({ name, vaults: chosen, ...(description ? { description } : {}) }));
    } catch (err) {
      setBusy(false);
      if (err instanceof ApiError && (err.field === 'name' || err.code === 'agent_exists')) setErrs({ name: err.message });
      else setError(err);
    }
  };

  return (
    <section className="card" aria-labelledby="new-agent-title">
      <h2 id="new-agent-title">New agent</h2>
      <form onSubmit={submit} onInput={clearErrorOnInput(setErrs)} noValidate className="narrow-form">
        <Field label="Name" error={errs.name} hint="For example ci-bot or support-agent">
          {(p) => <input {...p} name="name" value={name} onChange={(e) => setName(e.target.value)} spellCheck={false} autoComplete="off" autoFocus />}
        </Field>
        <Field label="Description" optional>
          {(p) => <input {...p} value={description} onChange={(e) => setDescription(e.target.value)} maxLength={1024} />}
        </Field>
        <fieldset className="checks">
          <legend>Vaults (the agent gets the proxy role: it can see names and ask, nothing more)</legend>
          {all.map((v) => (
            <label key={v} className="check">
              <input
                type="checkbox"
                checked={chosen.includes(v)}
                onChange={(e) => setChosen((c) => (e.target.checked ? [...c, v] : c.filter((x) => x !== v)))}
              />{' '}
              {v}
            </label>
          ))}
        </fieldset>
        <FormActions error={error} onCancel={onCancel} busy={busy} label="Create agent" busyLabel="Creating…" />
      </form>
    </section>
  );
}
