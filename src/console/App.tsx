/** The shell: who is signed in, which vault, the navigation, and the page for the current path. */
import { useCallback, useEffect, useState, type ReactNode } from 'react';
import { lk, setUnauthenticatedHandler, type Me, type Vault } from './api';
import { Link, navigate, useLocation } from './router';
import { Loading } from './ui';
import { SessionContext, type Session } from './session';
import { Login, Setup, Account } from './pages/Auth';
import { Secrets, SecretDetail } from './pages/Secrets';
import { Audit } from './pages/Audit';
import { StatusPage } from './pages/Status';
import { Agents } from './pages/Agents';
import { AccessRequests } from './pages/Access';
import { Members } from './pages/Members';
import { Services } from './pages/Services';
import { Proposals, ProposalDetail, ApprovalPage } from './pages/Proposals';

const VAULT_KEY = 'latchkey.vault';
/**
 * A hint (not a credential: the session is an HttpOnly cookie the page cannot read) that this
 * browser has logged in, so a visit without it shows the login page at once instead of asking
 * the server and leaving a refused request in the audit log.
 */
const SIGNED_IN_KEY = 'latchkey.signedIn';
const hint = {
  get: () => localStorage.getItem(SIGNED_IN_KEY) === '1',
  set: (on: boolean) => (on ? localStorage.setItem(SIGNED_IN_KEY, '1') : localStorage.removeItem(SIGNED_IN_KEY)),
};

const NAV: Array<{ to: string; label: string; badge?: 'grants' | 'proposals' }> = [
  { to: '/secrets', label: 'Secrets' },
  { to: '/audit', label: 'Audit log' },
  { to: '/status', label: 'Status' },
  { to: '/agents', label: 'Agents' },
  { to: '/access', label: 'Access requests', badge: 'grants' },
  { to: '/members', label: 'Members' },
  { to: '/services', label: 'Services' },
  { to: '/proposals', label: 'Proposals', badge: 'proposals' },
];

export function App() {
  const { path } = useLocation();
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [message, setMessage] = useState<string | null>(null);

  useEffect(() => {
    setUnauthenticatedHandler((err) => {
      hint.set(false);
      setMe(null);
      setMessage(err.code === 'session_expired' ? 'Your session has expired. Log in again to continue.' : 'Your session has ended. Log in again to continue.');
    });
    if (!hint.get()) setMe(null);
    else
      lk.me(undefined, true).then(setMe, () => {
        hint.set(false);
        setMe(null);
      });
    return () => setUnauthenticatedHandler(null);
  }, []);

  const onLogin = useCallback((m: Me) => {
    hint.set(true);
    setMe(m);
    setMessage(null);
  }, []);

  const logout = useCallback(async () => {
    try {
      await lk.logout();
    } catch {
      // the session may already be gone; the cookie is cleared either way
    }
    hint.set(false);
    setMe(null);
    setMessage('You have logged out.');
    navigate('/', { replace: true });
  }, []);

  if (path === '/setup') {
    return (
      <Bare>
        <Setup
          onDone={(m) => {
            onLogin(m);
            navigate('/secrets', { replace: true });
          }}
        />
      </Bare>
    );
  }
  if (me === undefined) {
    return (
      <Bare>
        <Loading what="Checking your session" />
      </Bare>
    );
  }
  if (path === '/approve') {
    // the approval link works before login: the page shows the proposal and asks to log in to decide
    return me ? (
      <Shell me={me} onLogout={logout}>
        <ApprovalPage me={me} onLogin={onLogin} />
      </Shell>
    ) : (
      <Bare>
        <ApprovalPage me={null} onLogin={onLogin} />
      </Bare>
    );
  }
  if (!me) {
    return (
      <Bare>
        <Login message={message} onLogin={onLogin} />
      </Bare>
    );
  }
  return (
    <Shell me={me} onLogout={logout}>
      <Route path={path} />
    </Shell>
  );
}

function Route({ path }: { path: string }) {
  useEffect(() => {
    if (path === '/' || path === '/login') navigate('/secrets', { replace: true });
  }, [path]);
  const m = /^\/(secrets|proposals)\/(.+)$/.exec(path);
  if (m) {
    const arg = decodeURIComponent(m[2]!);
    return m[1] === 'secrets' ? <SecretDetail name={arg} /> : <ProposalDetail id={arg} />;
  }
  switch (path) {
    case '/':
    case '/login':
    case '/secrets':
      return <Secrets />;
    case '/audit':
      return <Audit />;
    case '/status':
      return <StatusPage />;
    case '/agents':
      return <Agents />;
    case '/access':
      return <AccessRequests />;
    case '/members':
      return <Members />;
    case '/services':
      return <Services />;
    case '/proposals':
      return <Proposals />;
    case '/account':
      return <Account />;
    default:
      return (
        <div>
          <h1>Page not found</h1>
          <p>
            There is no console page at <code>{path}</code>. <Link to="/secrets">Go to Secrets</Link>.
          </p>
        </div>
      );
  }
}

function Bare({ children }: { children: ReactNode }) {
  return (
    <div className="bare">
      <header className="bare-brand">
        <span className="logo" aria-hidden="true" />
        <span className="brand-name">Latchkey</span>
      </header>
      <main id="main" className="bare-main">
        {children}
      </main>
    </div>
  );
}

function Shell({ me, onLogout, children }: { me: Me; onLogout: () => void; children: ReactNode }) {
  const { path } = useLocation();
  const [vaults, setVaults] = useState<Vault[]>([]);
  const [vault, setVaultState] = useState<string>(() => localStorage.getItem(VAULT_KEY) || 'default');
  const [tick, setTick] = useState(0);
  const [counts, setCounts] = useState<{ grants: number; proposals: number }>({ grants: 0, proposals: 0 });

  useEffect(() => {
    lk.vaults().then(
      (r) => {
        setVaults(r.items);
        if (r.items.length && !r.items.some((v) => v.name === vault)) setVaultState(r.items.some((v) => v.name === 'default') ? 'default' : r.items[0]!.name);
      },
      () => setVaults([]),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);

  useEffect(() => {
    let live = true;
    Promise.all([lk.grants(vault, 'pending').catch(() => ({ items: [] })), lk.proposals(vault, 'pending').catch(() => ({ items: [] }))]).then(([g, p]) => {
      if (live) setCounts({ grants: g.items.length, proposals: p.items.length });
    });
    return () => {
      live = false;
    };
  }, [vault, path]);

  const setVault = useCallback((name: string) => {
    setVaultState(name);
    localStorage.setItem(VAULT_KEY, name);
  }, []);
  const session: Session = { me, vault, vaults, setVault, reloadVaults: () => setTick((t) => t + 1) };
  const section = '/' + (path.split('/')[1] ?? '');

  return (
    <SessionContext.Provider value={session}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/secrets" className="brand">
          <span className="logo" aria-hidden="true" />
          <span className="brand-name">Latchkey</span>
        </Link>
        <div className="vault-picker">
          <label htmlFor="vault-select">Vault</label>
          <select id="vault-select" value={vault} onChange={(e) => setVault(e.target.value)}>
            {(vaults.length ? vaults.map((v) => v.name) : [vault]).map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </div>
        <div className="whoami">
          <Link to="/account" className="who" title="Your account">
            <span className="who-email">{me.email ?? 'owner (no email yet)'}</span> <span className="badge role">{me.role}</span>
          </Link>
          <button type="button" className="btn btn-small" onClick={onLogout}>
            Log out
          </button>
        </div>
      </header>
      <div className="layout">
        <nav className="sidenav" aria-label="Main">
          <ul>
            {NAV.map((n) => {
              const count = n.badge ? counts[n.badge] : 0;
              return (
                <li key={n.to}>
                  <Link to={n.to} aria-current={section === n.to ? 'page' : undefined}>
                    {n.label}
                    {count ? (
                      <span className="count" aria-label={`${count} pending`}>
                        {count}
                      </span>
                    ) : null}
                  </Link>
                </li>
              );
            })}
          </ul>
        </nav>
        <main id="main" className="main" tabIndex={-1}>
          {children}
        </main>
      </div>
    </SessionContext.Provider>
  );
}
