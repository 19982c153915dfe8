/**
 * Formatting for people: memory, shares, durations (vendor names come from the server:
 * `DeviceModel.vendor_name`).
 */

/** MiB as "512 MiB", "19.2 GiB", "80 GiB". */
export function formatMemory(mib: number | null | undefined): string {
  if (mib === null || mib === undefined) {
    return '–';
  }
  if (mib < 1024) {
    return `${Math.round(mib)} MiB`;
  }
  const gib = mib / 1024;
  return Number.isInteger(gib) ? `${gib} GiB` : `${gib.toFixed(1)} GiB`;
}

/** Milli-units as a share of a device: 250 -> "25%". */
export function formatShare(milli: number | null | undefined): string {
  if (milli === null || milli === undefined) {
    return '–';
  }
  const pct = milli / 10;
  return Number.isInteger(pct) ? `${pct}%` : `${pct.toFixed(1)}%`;
}

/** A 0..1 utilisation as "37%". */
export function formatUtil(u: number): string {
  return `${Math.round(Math.max(0, Math.min(1, u)) * 100)}%`;
}

/** Seconds as "59:12", "3 h 05 m", "2 d 4 h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) {
    return `${d} d ${h} h`;
  }
  if (h > 0) {
    return `${h} h ${String(m).padStart(2, '0')} m`;
  }
  return `${m}:${String(sec).padStart(2, '0')}`;
}

/** A reason code as words: "INSUFFICIENT_COMPUTE" -> "insufficient compute". */
export function reasonText(reason: string): string {
  return reason.toLowerCase().split('_').join(' ');
}
