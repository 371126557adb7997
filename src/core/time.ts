/**
 * Times are stored and compared as ISO-8601 strings (`2026-11-30T12:00:00.000Z`), which order
 * like the times they name only up to the year 9999: later ones are written `+010000-…` and
 * would sort before every real time (an expiry would count as already past).
 */
import { invalid } from './errors.js';

/** The latest time accepted from input. */
export const LATEST_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** A time (ms since the epoch) as the ISO string stored and compared; 400 naming `field` if it is not a time before the year 10000. */
export function isoTime(t: number, field: string): string {
  if (!(t <= LATEST_TIME) || Number.isNaN(new Date(t).getTime())) throw invalid(field, 'must be a time before the year 10000');
  return new Date(t).toISOString();
}
