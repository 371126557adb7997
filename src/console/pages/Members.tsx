/** Members: who belongs to the vault (people and agents) and, for instance admins, the people of the instance. */
import { useState, type FormEvent } from 'react';
import { ApiError, lk, type InstanceRole, type Member, type User } from '../api';
import { isInstanceAdmin, useSession } from '../session';
import { ConfirmDialog, Empty, ErrorBox, Field, Notice, OnceTokenDialog, PageHeader, Time, useAsync } from '../ui';
import { DataTable, ListStatus } from '../list';

const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;

export function Members() {
  const session = useSession();
  const { vault } = session;
  const list = useAsync(() => lk.members(vault), [vault]);
  const [removing, setRemoving] = useState<Member | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const items = list.data?.items ?? [];

  return (
    <div>
      <PageHeader title="Members" sub={<>People may read values as members and manage the vault as admins; agents hold the proxy role. Vault <strong>{vault}</strong>.</>} />
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      <AddMemberForm
        vault={vault}
        onAdded={(m) => {
          setNotice(`Added ${m.email} as ${m.role}.`);
          list.reload();
        }}
      />
      <ListStatus list={list} count={items.length} empty={<Empty title="No members yet">Instance owners and admins can work in every vault without being members.</Empty>} />
      {items.length ? (
        <DataTable caption={<>Members of vault {vault}</>} columns={['Member', 'Kind', 'Role', 'Added']} actions>
          {items.map((m) => {
            const who = m.kind === 'user' ? m.email ?? '—' : m.name ?? '—';
            return (
              <tr key={`${m.kind}:${who}`}>
                <td className="break">
                  <strong>{who}</strong>
                </td>
                <td>{m.kind === 'user' ? 'person' : 'agent'}</td>
                <td>
                  <span className="badge role">{m.role}</span>
                </td>
                <td>
                  <Time iso={m.added_at} />
                </td>
                <td className="actions">
                  <button type="button" className="btn btn-small btn-danger-ghost" onClick={() => setRemoving(m)} aria-label={`Remove ${who} from ${vault}`}>
                    Remove
                  </button>
                </td>
              </tr>
            );
          })}
        </DataTable>
      ) : null}
      {removing ? (
        <ConfirmDialog
          title="Remove member"
          confirmLabel="Remove"
          danger
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            if (removing.kind === 'user') await lk.removeMember(vault, removing.email ?? '');
            else await lk.removeVaultAgent(vault, removing.name ?? '');
            setNotice(`Removed ${removing.email ?? removing.name} from ${vault}.`);
            list.reload();
          }}
        >
          <p>
            <strong>{removing.email ?? removing.name}</strong> loses its role in vault <strong>{vault}</strong> at once.
          </p>
        </ConfirmDialog>
      ) : null}
      {isInstanceAdmin(session) ? <People /> : null}
    </div>
  );
}

function AddMemberForm({ vault, onAdded }: { vault: string; onAdded: (m: Member) => void }) {
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<'admin' | 'member'>('member');
  const [err, setErr] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!EMAIL_RE.test(email.trim())) return setErr('Enter the email of a person who has an account.');
    setErr(null);
    setBusy(true);
    try {
      const m = await lk.addMember(vault, email.trim(), role);
      setEmail('');
      onAdded(m);
    } catch (e2) {
      if (e2 instanceof ApiError && (e2.field === 'email' || e2.status === 404)) setErr(e2.message);
      else setError(e2);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="toolbar card" onSubmit={submit} onInput={() => setErr(null)} noValidate aria-label="Add a person to this vault">
      <Field label="Add a person (email)" error={err} className="grow">
        {(p) => <input {...p} type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="off" />}
      </Field>
      <Field label="Role">
        {(p) => (
          <select {...p} value={role} onChange={(e) => setRole(e.target.value as 'admin' | 'member')}>
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        )}
      </Field>
      <div className="filter-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Add to vault
        </button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

function People() {
  const { me } = useSession();
  const users = useAsync(() => lk.users(), []);
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<InstanceRole>('member');
  const [err, setErr] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [shown, setShown] = useState<{ email: string; token: string } | null>(null);
  const [removing, setRemoving] = useState<User | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const add = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!EMAIL_RE.test(email.trim())) return setErr('Enter an email address.');
    setErr(null);
    try {
      const u = await lk.createUser({ email: email.trim(), role });
      setEmail('');
      setShown({ email: u.email ?? '', token: u.token });
      users.reload();
    } catch (e2) {
      if (e2 instanceof ApiError && e2.field === 'email') setErr(e2.message);
      else setError(e2);
    }
  };
  const changeRole = async (u: User, r: InstanceRole) => {
    setError(null);
    try {
      await lk.setUserRole(u.email ?? '', r);
      setNotice(`${u.email} is now ${r}.`);
      users.reload();
    } catch (e2) {
      setError(e2);
    }
  };

  return (
    <section className="card" aria-labelledby="people-title">
      <h2 id="people-title">People of this instance</h2>
      <Notice text={notice} onDismiss={() => setNotice(null)} />
      <form className="toolbar" onSubmit={add} onInput={() => setErr(null)} noValidate aria-label="Add a person">
        <Field label="New person (email)" error={err} className="grow">
          {(p) => <input {...p} type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="off" />}
        </Field>
        <Field label="Instance role">
          {(p) => (
            <select {...p} value={role} onChange={(e) => setRole(e.target.value as InstanceRole)}>
              <option value="member">member</option>
              <option value="admin">admin</option>
              <option value="owner">owner</option>
            </select>
          )}
        </Field>
        <div className="filter-actions">
          <button type="submit" className="btn">
            Add person
          </button>
        </div>
      </form>
      <ErrorBox error={error} />
      <ErrorBox error={users.error} />
      {users.data ? (
        <DataTable columns={['Email', 'Instance role', 'Since']} actions>
          {users.data.items.map((u) => (
            <tr key={u.id}>
              <td className="break">
                {u.email ?? <span className="muted">owner (no email yet)</span>} {u.id === me.id ? <span className="muted small">(you)</span> : null}
              </td>
              <td>
                <label className="sr-only" htmlFor={`role-${u.id}`}>
                  Instance role of {u.email}
                </label>
                <select id={`role-${u.id}`} value={u.role} disabled={!u.email || u.id === me.id} onChange={(e) => changeRole(u, e.target.value as InstanceRole)}>
                  <option value="member">member</option>
                  <option value="admin">admin</option>
                  <option value="owner">owner</option>
                </select>
              </td>
              <td>
                <Time iso={u.created_at} />
              </td>
              <td className="actions">
                {u.email && u.id !== me.id ? (
                  <button type="button" className="btn btn-small btn-danger-ghost" onClick={() => setRemoving(u)} aria-label={`Remove ${u.email}`}>
                    Remove
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </DataTable>
      ) : null}
      {shown ? (
        <OnceTokenDialog
          title={`API token for ${shown.email}`}
          token={shown.token}
          note={<>Give it to {shown.email} for the CLI (<code>LATCHKEY_TOKEN</code>). They can set a password with it and then log in here.</>}
          onClose={() => setShown(null)}
        />
      ) : null}
      {removing ? (
        <ConfirmDialog
          title="Remove person"
          confirmLabel="Remove"
          danger
          typed={removing.email ?? ''}
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            await lk.removeUser(removing.email ?? '');
            setNotice(`Removed ${removing.email}.`);
            users.reload();
          }}
        >
          <p>
            <strong>{removing.email}</strong> loses access to every vault, and their sessions and API tokens stop working.
          </p>
        </ConfirmDialog>
      ) : null}
    </section>
  );
}
