/**
 * The one sha256 helper of the compiler (tuning-cache keys, template checksums, manifests, the disk
 * cache's digests): hex digest of a string (UTF-8) or bytes, optionally cut to its first `hexChars`.
 */
import { createHash } from 'node:crypto';

/** sha256 (hex, 64 chars; or its first `hexChars`) of `data` (strings are hashed as UTF-8). */
export function sha256(data: string | Uint8Array | readonly (string | Uint8Array)[], hexChars?: number): string {
  const h = createHash('sha256');
  for (const d of (Array.isArray(data) ? data : [data]) as (string | Uint8Array)[]) h.update(d);
  const hex = h.digest('hex');
  return hexChars === undefined ? hex : hex.slice(0, hexChars);
}
