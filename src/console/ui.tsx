/** Shared pieces: data loading, dialogs, fields, badges, times, pagination. Classes only, never style=. */
import { useCallback, useEffect, useId, useRef, useState, type Dispatch, type FormEvent, type ReactNode, type SetStateAction } from 'react';
import { ApiError, CATEGORY_LABELS, type Category } from './api';

// ---- data

export interface Async<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `fn` when `deps` change (and on reload); the newest call wins. */
export function useAsync<T>(fn: () => Promise<T>, deps: unknown[]): Async<T> {
  const [state, setState] = useState<{ data: T | null; error: unknown; loading: boolean }>({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  const seq = useRef(0);
  useEffect(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => mine === seq.current && setState({ data, error: null, loading: false }),
      (error) => mine === seq.current && setState({ data: null, error, loading: false }),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 403) return `Not allowed: ${err.message}`;
    return err.message;
  }
  if (err instanceof Error) return err.message;
  return 'Something went wrong.';
}

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : null;
  return (
    <div className="alert alert-error" role="alert">
      {title ? <strong>{title} </strong> : null}
      <span>{errorText(error)}</span>
      {e?.requestId ? <span className="muted small"> (request {e.requestId})</span> : null}
    </div>
  );
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p className="muted loading" role="status">
      {what}…
    </p>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <p className="empty-title">{title}</p>
      {children ? <div className="muted">{children}</div> : null}
    </div>
  );
}

/** A polite status line for the result of an action. */
export function Notice({ text, onDismiss }: { text: string | null; onDismiss: () => void }) {
  if (!text) return <div role="status" className="sr-only" />;
  return (
    <div className="alert alert-ok" role="status">
      <span>{text}</span>
      <button type="button" className="link-btn" onClick={onDismiss}>
        Dismiss
      </button>
    </div>
  );
}

// ---- layout

export function PageHeader({ title, children, sub }: { title: string; children?: ReactNode; sub?: ReactNode }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    // move focus to the page's heading after navigation (screen readers announce the new page)
    if (document.activeElement === document.body || document.activeElement?.closest('nav')) ref.current?.focus({ preventScroll: true });
  }, [title]);
  return (
    <div className="page-header">
      <div>
        <h1 ref={ref} tabIndex={-1}>
          {title}
        </h1>
        {sub ? <p className="muted page-sub">{sub}</p> : null}
      </div>
      {children ? <div className="page-actions">{children}</div> : null}
    </div>
  );
}

// ---- dialogs (native <dialog>: focus is trapped, Escape closes)

export function Dialog({ title, onClose, children, wide }: { title: string; onClose: () => void; children: ReactNode; wide?: boolean }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => {
      if (d?.open) d.close();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      className={wide ? 'dialog dialog-wide' : 'dialog'}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <div className="dialog-head">
        <h2 id={titleId}>{title}</h2>
        <button type="button" className="icon-btn" aria-label="Close dialog" onClick={onClose}>
          ×
        </button>
      </div>
      <div className="dialog-body">{children}</div>
    </dialog>
  );
}

/** Asks before doing something; `typed` makes the person type a word (a name) first. */
export function ConfirmDialog(props: {
  title: string;
  children: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  typed?: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [text, setText] = useState('');
  const id = useId();
  const ready = !props.typed || text === props.typed;
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <form onSubmit={submit}>
        <div className="confirm-text">{props.children}</div>
        {props.typed ? (
          <div className="field">
            <label htmlFor={id}>
              Type <code>{props.typed}</code> to confirm
            </label>
            <input id={id} autoComplete="off" spellCheck={false} value={text} onChange={(e) => setText(e.target.value)} autoFocus />
          </div>
        ) : null}
        <ErrorBox error={error} />
        <div className="form-actions">
          <button type="button" className="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" className={props.danger ? 'btn btn-danger' : 'btn btn-primary'} disabled={!ready || busy} autoFocus={!props.typed}>
            {busy ? 'Working…' : props.confirmLabel}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

// ---- fields

/**
 * A form's onInput handler: the error of the field being edited goes away (fields are matched by
 * their name attribute, `field:` and `cred:` prefixes dropped).
 */
export function clearErrorOnInput(setErrs: Dispatch<SetStateAction<Record<string, string>>>) {
  return (e: FormEvent<HTMLFormElement>) => {
    const name = (e.target as HTMLInputElement).name?.replace(/^(field|cred):/, '');
    if (!name) return;
    setErrs((x) => {
      if (!(name in x)) return x;
      const rest = { ...x };
      delete rest[name];
      return rest;
    });
  };
}

export interface FieldProps {
  id: string;
  'aria-describedby'?: string;
  'aria-invalid'?: boolean;
}

export function Field(props: { label: ReactNode; hint?: ReactNode; error?: string | null; optional?: boolean; children: (p: FieldProps) => ReactNode; className?: string }) {
  const id = useId();
  const hintId = `${id}-hint`;
  const errId = `${id}-err`;
  const described = [props.hint ? hintId : null, props.error ? errId : null].filter(Boolean).join(' ') || undefined;
  return (
    <div className={`field${props.className ? ` ${props.className}` : ''}`}>
      <label htmlFor={id}>
        {props.label}
        {props.optional ? <span className="optional"> (optional)</span> : null}
      </label>
      {props.children({ id, 'aria-describedby': described, 'aria-invalid': props.error ? true : undefined })}
      {props.hint ? (
        <div id={hintId} className="hint">
          {props.hint}
        </div>
      ) : null}
      {props.error ? (
        <div id={errId} className="field-error">
          {props.error}
        </div>
      ) : null}
    </div>
  );
}

// ---- badges, times

export function CategoryBadge({ category }: { category: string }) {
  const label = CATEGORY_LABELS[category as Category] ?? category;
  return <span className={`badge cat cat-${category}`}>{label}</span>;
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge st st-${status}`}>{status}</span>;
}

function pad(n: number) {
  return String(n).padStart(2, '0');
}

export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function relative(iso: string, now = Date.now()): string {
  const s = Math.round((Date.parse(iso) - now) / 1000);
  const a = Math.abs(s);
  const [n, u] = a < 60 ? [a, 'second'] : a < 3600 ? [Math.round(a / 60), 'minute'] : a < 86400 ? [Math.round(a / 3600), 'hour'] : [Math.round(a / 86400), 'day'];
  const unit = `${n} ${u}${n === 1 ? '' : 's'}`;
  return s < 0 ? `${unit} ago` : `in ${unit}`;
}

export function Time({ iso, empty = '—' }: { iso: string | null | undefined; empty?: string }) {
  if (!iso) return <span className="muted">{empty}</span>;
  return (
    <time dateTime={iso} title={`${iso} (${relative(iso)})`}>
      {formatTime(iso)}
    </time>
  );
}

// ---- pagination over cursors

export function useCursorPages() {
  const [stack, setStack] = useState<Array<string | undefined>>([undefined]);
  const cursor = stack[stack.length - 1];
  return {
    cursor,
    page: stack.length,
    next: (c: string) => setStack((s) => [...s, c]),
    prev: () => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)),
    reset: () => setStack([undefined]),
  };
}

export function Pager({ page, nextCursor, onPrev, onNext, label }: { page: number; nextCursor: string | null | undefined; onPrev: () => void; onNext: (c: string) => void; label: string }) {
  if (page === 1 && !nextCursor) return null;
  return (
    <nav className="pager" aria-label={`${label} pages`}>
      <button type="button" className="btn" disabled={page <= 1} onClick={onPrev}>
        ← Previous
      </button>
      <span className="muted">Page {page}</span>
      <button type="button" className="btn" disabled={!nextCursor} onClick={() => nextCursor && onNext(nextCursor)}>
        Next →
      </button>
    </nav>
  );
}

// ---- clipboard

/** Copies text obtained on demand (a secret's value is fetched, copied and dropped, never rendered). */
export function CopyButton({ getText, label = 'Copy', className }: { getText: () => Promise<string> | string; label?: string; className?: string }) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  useEffect(() => {
    if (state === 'idle') return;
    const t = setTimeout(() => setState('idle'), 2500);
    return () => clearTimeout(t);
  }, [state]);
  const copy = async () => {
    try {
      const text = await getText();
      await navigator.clipboard.writeText(text);
      setState('copied');
    } catch {
      setState('failed');
    }
  };
  return (
    <button type="button" className={className ?? 'btn'} onClick={copy} aria-live="polite">
      {state === 'copied' ? 'Copied' : state === 'failed' ? 'Copy failed' : label}
    </button>
  );
}

/** A token shown once (agents, people): copy it now; it is gone when the dialog closes. */
export function OnceTokenDialog({ title, token, note, onClose }: { title: string; token: string; note: ReactNode; onClose: () => void }) {
  return (
    <Dialog title={title} onClose={onClose}>
      <div className="alert alert-warn">This token is shown only now. Latchkey keeps only a keyed hash of it and cannot show it again.</div>
      <p>{note}</p>
      <div className="token-box">
        <code className="token" data-testid="once-token">
          {token}
        </code>
        <CopyButton getText={() => token} />
      </div>
      <div className="form-actions">
        <button type="button" className="btn btn-primary" onClick={onClose}>
          I have saved it
        </button>
      </div>
    </Dialog>
  );
}

// ---- form footers

/** An action's error, then Cancel and the submit button (disabled while busy or `disabled`; it reads `busyLabel` while busy). */
export function FormActions({ error, onCancel, busy, label, busyLabel, danger, disabled }: { error?: unknown; onCancel: () => void; busy: boolean; label: ReactNode; busyLabel: ReactNode; danger?: boolean; disabled?: boolean }) {
  return (
    <>
      <ErrorBox error={error} />
      <div className="form-actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className={danger ? 'btn btn-danger' : 'btn btn-primary'} disabled={busy || disabled}>
          {busy ? busyLabel : label}
        </button>
      </div>
    </>
  );
}
