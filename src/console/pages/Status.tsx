/** Status: backend, counts by category, keys, last rotation, audit head, and activity per hour (inline SVG from the audit API). */
import { CATEGORIES, CATEGORY_LABELS, lk, type AuditEvent } from '../api';
import { CategoryBadge, ErrorBox, Loading, PageHeader, Time, useAsync } from '../ui';
import { DataTable } from '../list';

const HOURS = 24;
const HOUR = 3600_000;
const MAX_PAGES = 10;
const PAGE = 1000;

/** What a person wants to see per hour: proxied requests, secret reads (and vends), denials, everything else. */
const SERIES = ['proxied', 'reads', 'denied', 'other'] as const;
type Series = (typeof SERIES)[number];
const SERIES_LABEL: Record<Series, string> = { proxied: 'proxied requests', reads: 'reads', denied: 'denied', other: 'other' };

type Bucket = { start: number } & Record<Series, number>;

function seriesOf(ev: AuditEvent): Series {
  if (ev.outcome === 'denied') return 'denied';
  if (ev.action === 'proxy.request') return 'proxied';
  if (ev.action === 'secret.read' || ev.action === 'secret.vend') return 'reads';
  return 'other';
}

const sum = (b: Bucket) => SERIES.reduce((a, k) => a + b[k], 0);

async function loadActivity(): Promise<{ buckets: Bucket[]; truncated: boolean; total: number }> {
  const end = Math.floor(Date.now() / HOUR) * HOUR + HOUR;
  const start = end - HOURS * HOUR;
  const buckets: Bucket[] = Array.from({ length: HOURS }, (_, i) => ({ start: start + i * HOUR, proxied: 0, reads: 0, denied: 0, other: 0 }));
  let cursor: string | undefined;
  let truncated = false;
  let total = 0;
  for (let page = 0; ; page++) {
    if (page === MAX_PAGES) {
      truncated = true;
      break;
    }
    const r = await lk.audit({ since: new Date(start).toISOString(), limit: PAGE, cursor });
    for (const ev of r.items as AuditEvent[]) {
      const i = Math.floor((Date.parse(ev.ts) - start) / HOUR);
      const b = buckets[i];
      if (!b) continue;
      total++;
      b[seriesOf(ev)]++;
    }
    if (!r.next_cursor) break;
    cursor = r.next_cursor;
  }
  return { buckets, truncated, total };
}

function hh(t: number) {
  return `${String(new Date(t).getHours()).padStart(2, '0')}:00`;
}

function niceMax(n: number): number {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export function ActivityChart({ buckets }: { buckets: Bucket[] }) {
  const W = 720;
  const H = 220;
  const L = 40;
  const R = 8;
  const T = 10;
  const B = 28;
  const pw = W - L - R;
  const ph = H - T - B;
  const max = niceMax(Math.max(0, ...buckets.map(sum)));
  const bw = pw / buckets.length;
  const y = (v: number) => T + ph - (v / max) * ph;
  const total = buckets.reduce((a, b) => a + sum(b), 0);
  const peak = buckets.reduce((a, b) => (sum(b) > sum(a) ? b : a), buckets[0]!);
  return (
    <svg className="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby="chart-title chart-desc" data-testid="activity-chart">
      <title id="chart-title">Audit events per hour, last 24 hours</title>
      <desc id="chart-desc">
        {total} events in total; the busiest hour began at {hh(peak.start)} with {sum(peak)} events.
      </desc>
      {[0, max / 2, max].map((v) => (
        <g key={v}>
          <line className="grid" x1={L} x2={W - R} y1={y(v)} y2={y(v)} />
          <text className="axis" x={L - 6} y={y(v) + 4} textAnchor="end">
            {Number.isInteger(v) ? v : v.toFixed(1)}
          </text>
        </g>
      ))}
      {buckets.map((b, i) => {
        const x = L + i * bw + 2;
        const w = Math.max(1, bw - 4);
        let base = 0;
        const parts = SERIES.map((k) => {
          const v = b[k];
          const top = y(base + v);
          const h = y(base) - top;
          base += v;
          return v ? <rect key={k} className={`bar bar-${k}`} x={x} y={top} width={w} height={h} /> : null;
        });
        return (
          <g key={b.start}>
            <title>{`${hh(b.start)}–${hh(b.start + HOUR)}: ${SERIES.map((k) => `${b[k]} ${SERIES_LABEL[k]}`).join(', ')}`}</title>
            <rect className="bar-hit" x={L + i * bw} y={T} width={bw} height={ph} />
            {parts}
            {i % 3 === 0 ? (
              <text className="axis" x={x + w / 2} y={H - 8} textAnchor="middle">
                {hh(b.start)}
              </text>
            ) : null}
          </g>
        );
      })}
    </svg>
  );
}

function CategoryBar({ counts, total }: { counts: Record<string, number>; total: number }) {
  const W = 600;
  let x = 0;
  return (
    <svg className="catbar" viewBox={`0 0 ${W} 14`} preserveAspectRatio="none" aria-hidden="true">
      <rect className="catbar-bg" x={0} y={0} width={W} height={14} rx={4} />
      {CATEGORIES.map((c) => {
        const n = counts[c] ?? 0;
        if (!n || !total) return null;
        const w = (n / total) * W;
        const r = <rect key={c} className={`catfill catfill-${c}`} x={x} y={0} width={w} height={14} />;
        x += w;
        return r;
      })}
    </svg>
  );
}

export function StatusPage() {
  const st = useAsync(() => lk.status(), []);
  // the key versions and the whole log's activity are for instance admins (the status says who is
  // one): nobody else is sent to ask for them, so they are not refused and audited as denials
  const admin = !!st.data?.key;
  const keys = useAsync(() => (admin ? lk.keys() : Promise.resolve(null)), [admin]);
  const act = useAsync(() => (admin ? loadActivity() : Promise.resolve(null)), [admin]);
  const s = st.data;
  return (
    <div>
      <PageHeader title="Status" />
      <ErrorBox error={st.error} />
      {st.loading && !s ? <Loading /> : null}
      {s ? (
        <div className="cards">
          <section className="card stat" aria-labelledby="st-storage">
            <h2 id="st-storage">Storage</h2>
            <p className="big">{s.backend === 'postgres' ? 'PostgreSQL' : s.backend === 'sqlite' ? 'SQLite' : s.backend}</p>
            <p className="muted small break">{s.location}</p>
          </section>
          <section className="card stat" aria-labelledby="st-secrets">
            <h2 id="st-secrets">Secrets</h2>
            <p className="big">{s.secrets}</p>
            <p className="muted small">
              in {s.vaults} vault{s.vaults === 1 ? '' : 's'}
            </p>
          </section>
          <section className="card stat" aria-labelledby="st-rot">
            <h2 id="st-rot">Last secret rotation</h2>
            <p className="big-ish">
              <Time iso={s.last_rotation} empty="never" />
            </p>
          </section>
          {s.audit ? (
            <section className="card stat" aria-labelledby="st-audit">
              <h2 id="st-audit">Audit head</h2>
              <p className="big">#{s.audit.seq}</p>
              <p className="muted small">
                {s.audit.events} events · <code title={s.audit.hash}>{s.audit.hash.slice(0, 16)}…</code>
              </p>
            </section>
          ) : null}
          {s.key ? (
            <section className="card stat" aria-labelledby="st-keys">
              <h2 id="st-keys">Keys</h2>
              <p className="big">KEK v{s.key.kek_version}</p>
              <p className="muted small">master key from {s.key.master_key_source}</p>
            </section>
          ) : null}
          <section className="card stat" aria-labelledby="st-server">
            <h2 id="st-server">Server</h2>
            <p className="big-ish">v{s.version}</p>
            <p className="muted small">
              up since <Time iso={s.started_at} />
            </p>
          </section>
        </div>
      ) : null}

      {s ? (
        <section className="card" aria-labelledby="st-cats">
          <h2 id="st-cats">Secrets by category</h2>
          <CategoryBar counts={s.by_category} total={s.secrets} />
          <ul className="legend">
            {CATEGORIES.map((c) => (
              <li key={c}>
                <CategoryBadge category={c} /> <span className="num-strong" aria-label={`${CATEGORY_LABELS[c]}: ${s.by_category[c] ?? 0}`}>{s.by_category[c] ?? 0}</span>
              </li>
            ))}
          </ul>
        </section>
      ) : null}

      {admin ? (
        <section className="card" aria-labelledby="st-activity">
          <h2 id="st-activity">Activity per hour</h2>
          <ErrorBox error={act.error} />
          {act.loading && !act.data ? <Loading what="Reading the audit log" /> : null}
          {act.data ? (
            <>
              <ActivityChart buckets={act.data.buckets} />
              <ul className="legend">
                {SERIES.map((k) => (
                  <li key={k}>
                    <span className={`swatch swatch-${k}`} aria-hidden="true" /> {SERIES_LABEL[k]}
                  </li>
                ))}
                <li className="muted">
                  {act.data.total} events in the last 24 hours{act.data.truncated ? ` (the newest ${MAX_PAGES * PAGE} counted)` : ''}
                </li>
              </ul>
            </>
          ) : null}
        </section>

      ) : null}

      {admin ? (
        <section className="card" aria-labelledby="st-keyring">
          <h2 id="st-keyring">Key versions</h2>
          {keys.error ? <ErrorBox error={keys.error} /> : null}
          {keys.data ? (
            <>
              <p className="muted small">
                New writes use KEK v{keys.data.kek_version}.{keys.data.kdf ? ` Master key stretched with ${keys.data.kdf}.` : ''}{' '}
                {keys.data.needs_rewrap ? `${keys.data.needs_rewrap} sealed items (secret versions, the proxy CA key, pending proposals' values) are on older keys (latchkey key rewrap).` : 'Everything sealed is on the newest key.'}
              </p>
              <DataTable columns={['KEK version', 'Created', { label: 'Sealed versions', className: 'num' }]}>
                {keys.data.keks.map((k) => (
                  <tr key={k.version}>
                    <td>
                      v{k.version} {k.version === keys.data!.kek_version ? <span className="badge st st-approved">current</span> : null}
                    </td>
                    <td>
                      <Time iso={k.created_at} />
                    </td>
                    <td className="num">{k.sealed_versions}</td>
                  </tr>
                ))}
              </DataTable>
            </>
          ) : keys.loading ? (
            <Loading />
          ) : null}
        </section>
      ) : null}
    </div>
  );
}
