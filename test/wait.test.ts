/**
 * runtime/wait.ts: gpuWait settles exactly as its promise does, and while it is pending (past spinMs)
 * the event loop turns about once per slice instead of spinning (what keeps Dawn's busy polling off a
 * CPU adapter's cores); sliceMs 0 leaves the loop alone.
 */
import test from 'ava';
import { gpuWait, setWaitOptions, getWaitOptions } from '../runtime/wait.js';

test.serial('gpuWait resolves and rejects as its promise does; options are checked', async (t) => {
  t.is(await gpuWait(Promise.resolve(3)), 3);
  await t.throwsAsync(() => gpuWait(Promise.reject(new Error('lost'))), { message: 'lost' });
  t.throws(() => setWaitOptions({ sliceMs: -1 }), { instanceOf: RangeError, message: /sliceMs/ });
  t.throws(() => setWaitOptions({ spinMs: Number.NaN }), { instanceOf: RangeError, message: /spinMs/ });
  t.deepEqual(setWaitOptions(), { spinMs: 1, sliceMs: 1 });
  t.deepEqual(getWaitOptions(), { spinMs: 1, sliceMs: 1 });
});

/** Event-loop turns (a self-rescheduling setImmediate, like Dawn's poll) during a 60 ms wait under `o`. */
async function turnsDuring(o: { spinMs: number; sliceMs: number }): Promise<number> {
  setWaitOptions(o);
  let turns = 0, on = true;
  const spin = () => { turns++; if (on) setImmediate(spin); };
  setImmediate(spin);
  await gpuWait(new Promise((r) => setTimeout(r, 60)));
  on = false;
  setWaitOptions();
  return turns;
}

test.serial('a pending gpuWait throttles the event loop to about one turn per slice', async (t) => {
  const busy = await turnsDuring({ spinMs: 0, sliceMs: 0 });
  const throttled = await turnsDuring({ spinMs: 0, sliceMs: 5 });
  t.true(throttled <= 20, `throttled: ${throttled} turns in 60 ms (≤ 20 expected at 5 ms slices)`);
  t.true(busy > 5 * throttled, `busy polling ${busy} turns vs throttled ${throttled}`);
});
