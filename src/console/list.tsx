/** Shared list scaffolding: error/loading/empty states and the table frame. Classes only, never style=. */
import type { ReactNode } from 'react';
import { ErrorBox, Loading, type Async } from './ui';

/**
 * The states around a list: its error, "Loading…" until the first answer, and `empty` (an <Empty>)
 * once an answer came back with no item.
 */
export function ListStatus({ list, count, empty }: { list: Pick<Async<unknown>, 'data' | 'error' | 'loading'>; count: number; empty?: ReactNode }) {
  return (
    <>
      <ErrorBox error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data && !count ? empty ?? null : null}
    </>
  );
}

export type Column = ReactNode | { label: ReactNode; className?: string };

function isColumnObject(c: Column): c is { label: ReactNode; className?: string } {
  return typeof c === 'object' && c !== null && 'label' in (c as object);
}

/**
 * `<div class="table-wrap"><table class="table">` with an optional screen-reader caption, one
 * `<th scope="col">` per column and, with `actions`, a last column headed "Actions" for screen readers.
 */
export function DataTable({ caption, columns, actions, className, children }: { caption?: ReactNode; columns: Column[]; actions?: boolean; className?: string; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table className={className ? `table ${className}` : 'table'}>
        {caption ? <caption className="sr-only">{caption}</caption> : null}
        <thead>
          <tr>
            {columns.map((c, i) =>
              isColumnObject(c) ? (
                <th key={i} scope="col" className={c.className}>
                  {c.label}
                </th>
              ) : (
                <th key={i} scope="col">
                  {c}
                </th>
              ),
            )}
            {actions ? (
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            ) : null}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

/** A row of toggle buttons that filters a list by status ('' is "all"). */
export function StatusTabs<T extends string>({ label, tabs, value, onChange }: { label: string; tabs: Array<{ id: T | ''; label: string }>; value: T | ''; onChange: (id: T | '') => void }) {
  return (
    <div className="tabs" role="group" aria-label={label}>
      {tabs.map((t) => (
        <button key={t.id || 'all'} type="button" className={value === t.id ? 'tab tab-on' : 'tab'} aria-pressed={value === t.id} onClick={() => onChange(t.id)}>
          {t.label}
        </button>
      ))}
    </div>
  );
}
