/**
 * Lookups in plain objects keyed by user-chosen names (layer names, node ids, tensor names).
 *
 * A plain object inherits `toString`, `constructor`, `valueOf`, `hasOwnProperty`, … from
 * Object.prototype, so `rec[name]` finds a function for a layer named `toString`, and
 * `rec[name] = v` with `name === '__proto__'` replaces the object's prototype instead of adding a
 * key. Every object indexed by such a name reads through `ownValue` and writes through `setOwn`
 * (or is a Map). Browser-safe, no imports.
 */

/** `rec[key]` when `rec` has `key` as an own property, else undefined (never an inherited member). */
export function ownValue<T>(rec: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return rec !== undefined && Object.prototype.hasOwnProperty.call(rec, key) ? rec[key] : undefined;
}

/** Whether `rec` has `key` as an own property (`key in rec` also sees Object.prototype's members). */
export function hasOwn(rec: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(rec, key);
}

/** Sets `rec[key] = value` as an own, enumerable property, also for `key === '__proto__'`. */
export function setOwn<T>(rec: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(rec, key, { value, enumerable: true, writable: true, configurable: true });
}
