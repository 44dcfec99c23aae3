/**
 * Counts the tests of a chaos test file that ran and failed, and records one
 * reliability line per chaos source once the file's suites are over.
 */
import { beforeEach, describe, expect, it } from "@effect/vitest"
import * as Chaos from "../../src/kit/Chaos.js"
import { recordFault } from "../harness/reliability.js"
import { retries } from "./fixtures.js"

/** One chaos source under a suite, for the record. */
export interface Tracked {
  /** The fault as the table shows it (stable across runs: it keys the record). */
  readonly fault: string
  readonly chaos: Chaos.Chaos
}

/** Starts counting the file's tests; call at the top of the file. */
export const trackTests = () => {
  const state = { ran: 0, failed: [] as Array<string> }
  beforeEach(({ onTestFailed, task }) => {
    state.ran++
    onTestFailed(() => void state.failed.push(task.name))
  })
  return state
}

const injected = (s: Chaos.Stats): string =>
  `${Chaos.failures(s)} failures injected (Unavailable ${s.failures.Unavailable}, Throttled ${s.failures.Throttled}, Timeout ${s.failures.Timeout}) in ${s.calls} calls`

/**
 * The last test of the file: every suite test before it passed, and each
 * chaos source really injected failures; then one record per source.
 */
export const summarize = (
  suite: string,
  state: { readonly ran: number; readonly failed: ReadonlyArray<string> },
  tracked: ReadonlyArray<Tracked>
) =>
  describe(`${suite} suite under chaos: summary`, () => {
    it("every suite test passed while every chaos source injected failures", () => {
      const ran = state.ran - 1
      expect(state.failed).toEqual([])
      expect(ran).toBeGreaterThan(0)
      for (const t of tracked) expect(Chaos.failures(t.chaos.stats), t.fault).toBeGreaterThan(0)
      for (const t of tracked) {
        recordFault({
          area: "chaos",
          fault: t.fault,
          expected: `the ${suite} conformance suite passes unchanged: the retry policy absorbs every transient failure`,
          observed: `${ran - state.failed.length} of ${ran} suite tests passed in this file; ${injected(t.chaos.stats)}; ${retries.count} retries in the file`
        })
      }
    })
  })
