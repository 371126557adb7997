/** First run (owner token -> email + password -> session), login, and the account page (who am I). */
import { useRef, useState, type FormEvent } from 'react';
import { ApiError, lk, type Me } from '../api';
import { useSession } from '../session';
import { Link } from '../router';
import { clearErrorOnInput, ErrorBox, Field, PageHeader, Time } from '../ui';

const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;
const MIN_PASSWORD = 12;

function formString(form: HTMLFormElement, name: string): string {
  const v = new FormData(form).get(name);
  return typeof v === 'string' ? v : '';
}

function fieldOf(err: unknown): string | undefined {
  return err instanceof ApiError ? err.field : undefined;
}

export function Login({ message, onLogin }: { message: string | null; onLogin: (me: Me) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const email = formString(form, 'email').trim();
    const password = formString(form, 'password');
    if (!email || !password) {
      setError(new Error('Enter your email and password.'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await lk.login(email, password);
      onLogin(await lk.me(undefined, true));
    } catch (err) {
      setError(err instanceof ApiError && err.code === 'bad_credentials' ? new Error('Email or password is wrong.') : err);
      setBusy(false);
    }
  };
  return (
    <section className="card auth-card" aria-labelledby="login-title">
      <h1 id="login-title">Log in</h1>
      {message ? (
        <div className="alert alert-info" role="status">
          {message}
        </div>
      ) : null}
      <form onSubmit={submit} noValidate>
        <Field label="Email">{(p) => <input {...p} name="email" type="email" autoComplete="username" required autoFocus />}</Field>
        <Field label="Password">{(p) => <input {...p} name="password" type="password" autoComplete="current-password" required />}</Field>
        <ErrorBox error={error} />
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? 'Logging in…' : 'Log in'}
          </button>
        </div>
      </form>
      <p className="muted small">
        First start? <Link to="/setup">Set up the owner account</Link> with the token the server printed.
      </p>
    </section>
  );
}

export function Setup({ onDone }: { onDone: (me: Me) => void }) {
  // the owner token lives only in this ref, for the few calls of the setup; it is never stored
  const token = useRef<string | null>(null);
  const [step, setStep] = useState<'token' | 'account' | 'done-before'>('token');
  const [owner, setOwner] = useState<Me | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [errs, setErrs] = useState<Record<string, string>>({});

  const checkToken = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const t = formString(e.currentTarget, 'token').trim();
    setError(null);
    if (!t.startsWith('lk_pat_')) {
      setErrs({ token: 'The token starts with lk_pat_. Copy it from the server output of the first start.' });
      return;
    }
    setErrs({});
    setBusy(true);
    try {
      const me = await lk.me(t);
      token.current = t;
      setOwner(me);
      setStep('account');
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? new Error('This token is not valid (or was revoked).') : err);
    } finally {
      setBusy(false);
    }
  };

  const setAccount = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const email = formString(form, 'email').trim();
    const password = formString(form, 'password');
    const confirm = formString(form, 'confirm');
    const next: Record<string, string> = {};
    if (!EMAIL_RE.test(email)) next.email = 'Enter an email address.';
    if (password.length < MIN_PASSWORD) next.password = `Use at least ${MIN_PASSWORD} characters.`;
    else if (password !== confirm) next.confirm = 'The two passwords differ.';
    setErrs(next);
    setError(null);
    if (Object.keys(next).length || !token.current) return;
    setBusy(true);
    try {
      await lk.updateMe({ ...(email !== owner?.email ? { email } : {}), password }, token.current);
      await lk.login(email, password);
      token.current = null;
      onDone(await lk.me(undefined, true));
    } catch (err) {
      const f = fieldOf(err);
      if (f === 'current_password') {
        setStep('done-before');
        token.current = null;
      } else if (f === 'email' || f === 'password') setErrs({ [f]: (err as Error).message });
      else setError(err);
      setBusy(false);
    }
  };

  return (
    <section className="card auth-card" aria-labelledby="setup-title">
      <h1 id="setup-title">Set up Latchkey</h1>
      <ol className="steps" aria-label="Setup steps">
        <li aria-current={step === 'token' ? 'step' : undefined}>Owner token</li>
        <li aria-current={step !== 'token' ? 'step' : undefined}>Email and password</li>
      </ol>
      {step === 'token' ? (
        <form onSubmit={checkToken} onInput={clearErrorOnInput(setErrs)} noValidate>
          <p>On its first start the server printed the owner's API token once. Paste it here to set the owner's email and password. (A person added later uses the API token they were given.)</p>
          <Field label="Owner token" error={errs.token} hint="Starts with lk_pat_. It is used for this setup only and is not stored by the console.">
            {(p) => <input {...p} name="token" type="password" autoComplete="off" spellCheck={false} required autoFocus />}
          </Field>
          <ErrorBox error={error} />
          <div className="form-actions">
            <Link to="/" className="btn">
              Back to login
            </Link>
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? 'Checking…' : 'Continue'}
            </button>
          </div>
        </form>
      ) : step === 'done-before' ? (
        <div>
          <div className="alert alert-info" role="status">
            The account {owner?.email ? `${owner.email} ` : ''}already has a password. Log in with it; change it on the Account page.
          </div>
          <div className="form-actions">
            <Link to="/" className="btn btn-primary">
              Go to login
            </Link>
          </div>
        </div>
      ) : (
        <form onSubmit={setAccount} onInput={clearErrorOnInput(setErrs)} noValidate>
          <p>
            Token accepted ({owner?.role}). Choose the email and password you will log in with.
          </p>
          <Field label="Email" error={errs.email}>
            {(p) => <input {...p} name="email" type="email" autoComplete="username" defaultValue={owner?.email ?? ''} required autoFocus />}
          </Field>
          <Field label="Password" error={errs.password} hint={`At least ${MIN_PASSWORD} characters.`}>
            {(p) => <input {...p} name="password" type="password" autoComplete="new-password" minLength={MIN_PASSWORD} required />}
          </Field>
          <Field label="Repeat the password" error={errs.confirm}>
            {(p) => <input {...p} name="confirm" type="password" autoComplete="new-password" required />}
          </Field>
          <ErrorBox error={error} />
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? 'Saving…' : 'Save and log in'}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

export function Account() {
  const { me } = useSession();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [errs, setErrs] = useState<Record<string, string>>({});

  const change = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const current = formString(form, 'current');
    const password = formString(form, 'password');
    const confirm = formString(form, 'confirm');
    const next: Record<string, string> = {};
    if (!current) next.current = 'Enter your current password.';
    if (password.length < MIN_PASSWORD) next.password = `Use at least ${MIN_PASSWORD} characters.`;
    else if (password !== confirm) next.confirm = 'The two passwords differ.';
    setErrs(next);
    setError(null);
    setDone(null);
    if (Object.keys(next).length) return;
    setBusy(true);
    try {
      await lk.updateMe({ password, current_password: current });
      form.reset();
      setDone('Password changed.');
    } catch (err) {
      if (fieldOf(err) === 'current_password') setErrs({ current: 'The current password is wrong.' });
      else setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div>
      <PageHeader title="Your account" />
      <section className="card" aria-labelledby="who-title">
        <h2 id="who-title">Who am I</h2>
        <dl className="facts">
          <dt>Email</dt>
          <dd>{me.email ?? '—'}</dd>
          <dt>Instance role</dt>
          <dd>
            <span className="badge role">{me.role}</span>
          </dd>
          <dt>Person id</dt>
          <dd>
            <code>{me.id}</code>
          </dd>
          <dt>Since</dt>
          <dd>
            <Time iso={me.created_at} />
          </dd>
        </dl>
      </section>
      <section className="card" aria-labelledby="pw-title">
        <h2 id="pw-title">Change password</h2>
        <form onSubmit={change} onInput={clearErrorOnInput(setErrs)} noValidate className="narrow-form">
          <Field label="Current password" error={errs.current}>
            {(p) => <input {...p} name="current" type="password" autoComplete="current-password" />}
          </Field>
          <Field label="New password" error={errs.password} hint={`At least ${MIN_PASSWORD} characters.`}>
            {(p) => <input {...p} name="password" type="password" autoComplete="new-password" />}
          </Field>
          <Field label="Repeat the new password" error={errs.confirm}>
            {(p) => <input {...p} name="confirm" type="password" autoComplete="new-password" />}
          </Field>
          <ErrorBox error={error} />
          {done ? (
            <div className="alert alert-ok" role="status">
              {done}
            </div>
          ) : null}
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? 'Saving…' : 'Change password'}
            </button>
          </div>
        </form>
      </section>
    </div>
  );
}
