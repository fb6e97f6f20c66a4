/**
 * The tuner's time budget: wall-clock seconds from the start of `tune()`, shader compiles included.
 *
 * On a CPU adapter compiling a candidate can cost more than timing it: lavapipe JITs a shader at its
 * first dispatch, 0.3–10 s a kernel cold, growing with the unrolled register tile (issue 14;
 * ../shared/LAVAPIPE.md, "First-dispatch compile"). So every candidate's preparation (code
 * generation, pipeline creation, the JIT in the warm-up run, the verification run) is timed and
 * counted (`compileSpentMs`), and the next one's is estimated before it is started:
 *
 *   compile estimate = median over the candidates prepared so far of (preparation ms / units) × units,
 *                      units = 8 + tile.rows · tile.cols · (1 dense, 2 DYAD: two factors)
 *                      (4 s before anything was prepared: a mid-size lavapipe kernel)
 *
 * Before each candidate (`decide`), with `left` = budget − elapsed − the confirmation still owed:
 *   - compile + runs fit in `left`: measure it;
 *   - the runs fit but compile + runs do not: skip it — its compile alone is what the budget cannot
 *     pay; a smaller tile of the same group may fit (the search moves on to its next point);
 *   - not even the runs fit: stop exploring (nothing else of the group would fit either).
 * The first candidate of a run is always measured (every tune measures something).
 */
import type { Schedule } from '../ir/graph.js';
import { median } from './timing.js';

/** A preparation estimate before any was measured, ms. */
const FIRST_COMPILE_MS = 4000;

export type BudgetDecision = 'measure' | 'skip' | 'stop';

/** Compile cost units of a schedule (see the file header): JIT time grows with the accumulators unrolled. */
export const compileUnits = (blocks: number, s: Schedule): number => 8 + s.tile.rows * s.tile.cols * (blocks === 1 ? 1 : 2);

export class Budget {
  readonly budgetS: number;
  readonly budgetMs: number;
  /** wall ms spent preparing candidates (compile, JIT, warm-up, verification run) */
  compileSpentMs = 0;
  /** candidates skipped because their compile did not fit */
  skipped = 0;
  private readonly t0: number;
  private perUnit: number[] = [];

  /** @param budgetS seconds; @param now the clock (ms), for tests */
  constructor(budgetS: number, private readonly now: () => number = () => performance.now()) {
    this.budgetS = budgetS;
    this.budgetMs = budgetS * 1000;
    this.t0 = now();
  }

  elapsedMs(): number { return this.now() - this.t0; }
  elapsedS(): number { return this.elapsedMs() / 1000; }

  /** Records one candidate's preparation: `ms` of wall time for a schedule of `units` compile units. */
  prepared(units: number, ms: number): void {
    this.compileSpentMs += ms;
    this.perUnit.push(ms / units);
  }

  /** Estimated preparation of a schedule of `units` compile units, ms. */
  compileEstimateMs(units: number): number {
    return this.perUnit.length ? median(this.perUnit) * units : FIRST_COMPILE_MS;
  }

  /** Whether `ms` more still fit in the budget. */
  fits(ms: number): boolean { return this.elapsedMs() + ms <= this.budgetMs; }

  /**
   * What to do with the next candidate (see the file header).
   * @param c.compileMs its estimated preparation; c.runMs its timed runs; c.owedMs the confirmation runs still owed
   * @param first no candidate was measured yet in this run
   */
  decide(c: { compileMs: number; runMs: number; owedMs: number }, first: boolean): BudgetDecision {
    if (first || this.fits(c.compileMs + c.runMs + c.owedMs)) return 'measure';
    if (this.fits(c.runMs + c.owedMs)) { this.skipped++; return 'skip'; }
    return 'stop';
  }
}
