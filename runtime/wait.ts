/**
 * Waiting for the GPU without starving a CPU adapter.
 *
 * Dawn's Node binding (`webgpu` 0.6.2, dawn/node/binding/AsyncRunner.cpp) completes `mapAsync`,
 * `onSubmittedWorkDone` and the other promises by calling `ProcessEvents` from a chain of back-to-back
 * `setImmediate` callbacks while any of them is pending, so the event loop never sleeps: the main thread
 * keeps a core busy (~64 % measured) for the whole wait. On a CPU adapter (Mesa lavapipe, SwiftShader)
 * the shader threads need that core: waiting quietly made every kernel 1.3–1.5× faster on this 2-core
 * machine (../shared/LAVAPIPE.md, "Waiting").
 *
 * `gpuWait(p)` leaves the binding alone and throttles the event loop instead, only while one of our own
 * waits is pending and only in Node: for the first `spinMs` nothing changes (short waits, e.g. batch-1
 * latency, keep Dawn's prompt polling); after that, one `setImmediate` callback of ours per event-loop
 * turn blocks the thread for `sliceMs` (`Atomics.wait`, a futex sleep: no CPU), so Dawn's poll and every
 * other callback run about once per slice and the cores go to the device. Other events (I/O, timers) are
 * still served, at most `sliceMs` late. Concurrent waits share one throttle. In browsers (no
 * `setImmediate`, the browser schedules GPU callbacks itself) `gpuWait` returns `p` unchanged.
 */

/** How `gpuWait` waits (Node only). */
export interface WaitOptions {
  /** ms of Dawn's own busy polling before throttling begins (keeps short waits prompt); default 1 */
  spinMs: number;
  /** ms the event loop sleeps per turn once throttled; 0 = never throttle (Dawn's busy polling); default 1 */
  sliceMs: number;
}

const DEFAULTS: WaitOptions = { spinMs: 1, sliceMs: 1 };
const options: WaitOptions = { ...DEFAULTS };

/**
 * Sets how the runtime waits for the GPU (Node only; every model of the process). `sliceMs: 0` restores
 * Dawn's busy polling. Returns the options now in force.
 * @throws RangeError for a negative or non-finite value.
 */
export function setWaitOptions(o: Partial<WaitOptions> = DEFAULTS): WaitOptions {
  for (const [k, v] of Object.entries(o)) if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`setWaitOptions: ${k} must be a finite number ≥ 0 (ms), got ${v}`);
  Object.assign(options, o);
  return { ...options };
}

/** The wait options in force. */
export function getWaitOptions(): WaitOptions { return { ...options }; }

type Immediate = (fn: () => void) => unknown;
const g = globalThis as { setImmediate?: Immediate; process?: { versions?: { node?: string } }; SharedArrayBuffer?: typeof SharedArrayBuffer; navigator?: { gpu?: unknown } };
/** Node with Dawn's binding: not a browser-like host with its own navigator.gpu (e.g. Electron), where the GPU process polls */
let node = !!g.process?.versions?.node && !g.navigator?.gpu && typeof g.setImmediate === 'function' && typeof g.SharedArrayBuffer === 'function';
const cell = node ? new Int32Array(new SharedArrayBuffer(4)) : undefined;

/** start times (performance.now(), ms) of the pending waits */
const pending = new Set<{ t0: number }>();
let ticking = false;

/** One event-loop turn of the throttle: sleeps `sliceMs` once the oldest pending wait is `spinMs` old. */
function turn(): void {
  if (pending.size === 0) { ticking = false; return; }
  let oldest = Infinity;
  for (const w of pending) oldest = Math.min(oldest, w.t0);
  if (options.sliceMs > 0 && performance.now() - oldest >= options.spinMs) {
    // a thread that may not block (Atomics.wait throws there) keeps Dawn's polling: never throttle again
    try { Atomics.wait(cell!, 0, 0, options.sliceMs); } catch { node = false; pending.clear(); }
  }
  g.setImmediate!(turn);
}

/**
 * Resolves (or rejects) as `p` does; meanwhile, in Node, keeps Dawn's completion polling from taking a
 * core away from a CPU adapter (see the module comment). Use it around every promise that waits on GPU
 * work: `mapAsync`, `onSubmittedWorkDone`.
 */
export async function gpuWait<T>(p: Promise<T>): Promise<T> {
  if (!node || options.sliceMs === 0) return p;
  const w = { t0: performance.now() };
  pending.add(w);
  if (!ticking) { ticking = true; g.setImmediate!(turn); }
  try { return await p; } finally { pending.delete(w); }
}
