/**
 * Mutual exclusion for LevelDB read-modify-write.
 *
 * LevelDB has no compare-and-set: `compareAndSet` and `commit` with checks
 * read, compare and then write, and no other write of the same keys may
 * land in between (it would be silently overwritten). Two tools:
 *
 * - `KeyedLock`: per-key locks. A caller takes all its keys at once or
 *   none: when one key is busy it gives back every key it took in this
 *   attempt and queues on the busy key alone; once handed that key it tries
 *   the rest again. Nobody waits while holding a key, so no cycle of
 *   waiters can form, without sorting keys. Waiters of one key are served
 *   first come, first served.
 * - `WriteGate`: who needs those locks. A read-modify-write ("modify")
 *   always takes the locks of its keys, then waits until every plain write
 *   that started before it has landed. A plain write (put, delete, commit
 *   without checks) takes no lock at all while no read-modify-write is
 *   active, only a counter; while one is, it takes the per-key locks too
 *   and so queues behind it on shared keys. Either way no plain write lands
 *   between a modify's read and its write, and the common case, bulk
 *   writes with no compare-and-set around, costs no per-key bookkeeping.
 *
 * Reads take no lock: a single LevelDB read is atomic by itself. Locks and
 * counters follow the LevelDB calls, not the fibers: an interrupted caller
 * stops waiting, but a call already started keeps its keys until LevelDB is
 * done (its calls cannot be aborted). The implementation is plain callbacks
 * rather than Effect semaphores: an uncontended write is a counter update,
 * which matters at 100k+ writes per second.
 */
import * as Effect from "effect/Effect"

/** Owner of keys taken by the single-key fast path (only compared against other owners). */
const SOLO = {}

interface Waiter {
  readonly owner: object
  readonly grant: () => void
}

export class KeyedLock {
  /** Holder of each held key. */
  private readonly owners = new Map<string, object>()
  /** Waiters of contended keys; a key is present only while someone waits. */
  private readonly queues = new Map<string, Array<Waiter>>()

  /** Number of keys currently held (for tests and diagnostics). */
  get size(): number {
    return this.owners.size
  }

  /** Number of callers waiting for a key (for tests and diagnostics). */
  get waiting(): number {
    let n = 0
    for (const q of this.queues.values()) n += q.length
    return n
  }

  /** Releases `key`, handing it to its next waiter if any. */
  release(key: string): void {
    if (this.queues.size !== 0) {
      const queue = this.queues.get(key)
      if (queue !== undefined) {
        const next = queue.shift()!
        if (queue.length === 0) this.queues.delete(key)
        this.owners.set(key, next.owner)
        next.grant()
        return
      }
    }
    this.owners.delete(key)
  }

  /** Queues a waiter on `key`; returns a withdrawal, true if it left the queue before being granted. */
  private enqueue(key: string, waiter: Waiter): () => boolean {
    let queue = this.queues.get(key)
    if (queue === undefined) {
      queue = []
      this.queues.set(key, queue)
    }
    queue.push(waiter)
    return () => {
      const q = this.queues.get(key)
      const i = q === undefined ? -1 : q.indexOf(waiter)
      if (i < 0) return false
      q!.splice(i, 1)
      if (q!.length === 0) this.queues.delete(key)
      return true
    }
  }

  /**
   * Takes every key of `keys` (duplicates allowed), then calls `ready` with
   * the distinct keys taken, which the caller must release. Returns a
   * cancellation that stops waiting and gives back what is held; after
   * `ready` it does nothing.
   */
  acquireAll(keys: ReadonlyArray<string>, ready: (held: ReadonlyArray<string>) => void): () => void {
    const owner = {}
    let held: Array<string> = []
    let withdraw: (() => boolean) | undefined
    let finished = false
    const giveBack = () => {
      for (const k of held) this.release(k)
      held = []
    }
    const attempt = (): void => {
      for (const key of keys) {
        const current = this.owners.get(key)
        if (current === undefined) {
          this.owners.set(key, owner)
          held.push(key)
        } else if (current !== owner) {
          giveBack()
          // Giving back may run other waiters synchronously; never queue on a key that came free meanwhile.
          if (!this.owners.has(key)) return attempt()
          withdraw = this.enqueue(key, {
            owner,
            grant: () => {
              // Handed over: this key is ours now; try the others again.
              withdraw = undefined
              held.push(key)
              attempt()
            }
          })
          return
        }
      }
      finished = true
      ready(held)
    }
    attempt()
    return () => {
      if (finished) return
      finished = true
      // `grant` runs `attempt` synchronously, so a waiter is either still queued or already done.
      withdraw?.()
      giveBack()
    }
  }

  /**
   * Runs `task` while holding `keys` and releases them when its promise
   * settles. The lock follows the LevelDB calls, not the fiber: an
   * interrupted caller stops waiting, but a task already started keeps its
   * keys until LevelDB is done (its calls cannot be aborted), so no other
   * write interleaves with it. Interrupted while still waiting, nothing runs.
   */
  run<A, E>(
    keys: ReadonlyArray<string>,
    task: () => Promise<A>,
    onError: (error: unknown) => E
  ): Effect.Effect<A, E> {
    return Effect.async<A, E>((resume) => this.launchLocked(keys, task, onError, resume))
  }

  /** `run` in callback form: takes the keys, launches, releases; returns the canceller of the wait, if any. */
  launchLocked<A, E>(
    keys: ReadonlyArray<string>,
    task: () => Promise<A>,
    onError: (error: unknown) => E,
    resume: (effect: Effect.Effect<A, E>) => void
  ): Effect.Effect<void> | undefined {
    const start = (held: ReadonlyArray<string>) =>
      launch(task, onError, resume, () => {
        for (const k of held) this.release(k)
      })
    // Fast path of every single-key write: the key is free, take it and go.
    if (keys.length === 1 && !this.owners.has(keys[0]!)) {
      this.owners.set(keys[0]!, SOLO)
      start(keys)
      return undefined
    }
    return Effect.sync(this.acquireAll(keys, start))
  }
}

/** Starts `task`, then calls `done` and resumes the fiber when it settles (whatever happened to the fiber). */
const launch = <A, E>(
  task: () => Promise<A>,
  onError: (error: unknown) => E,
  resume: (effect: Effect.Effect<A, E>) => void,
  done: () => void
): void => {
  let promise: Promise<A>
  try {
    promise = task()
  } catch (error) {
    done()
    return resume(Effect.fail(onError(error)))
  }
  promise.then(
    (a) => {
      done()
      resume(Effect.succeed(a))
    },
    (error) => {
      done()
      resume(Effect.fail(onError(error)))
    }
  )
}

/** Plain writes and read-modify-writes of one database (see the module comment). */
export class WriteGate {
  readonly locks = new KeyedLock()
  /** Read-modify-writes waiting for or holding their keys. */
  private modifying = 0
  /** Plain writes started on the lock-free path and not yet landed. */
  private unlocked = 0
  /** Read-modify-writes holding their keys, waiting for `unlocked` to reach zero. */
  private drainWaiters: Array<() => void> = []

  /** Read-modify-writes in progress (for tests and diagnostics). */
  get activeModifications(): number {
    return this.modifying
  }

  /** Plain writes in flight on the lock-free path (for tests and diagnostics). */
  get unlockedWrites(): number {
    return this.unlocked
  }

  private landed = (): void => {
    this.unlocked--
    if (this.unlocked === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters
      this.drainWaiters = []
      for (const w of waiters) w()
    }
  }

  /** Runs a plain write of `keys` (no reads): lock-free unless a read-modify-write is active. */
  write<A, E>(keys: ReadonlyArray<string>, task: () => Promise<A>, onError: (error: unknown) => E): Effect.Effect<A, E> {
    // The check and the launch happen in one synchronous step: no modify can start in between.
    return Effect.async<A, E>((resume) => {
      if (this.modifying > 0) return this.locks.launchLocked(keys, task, onError, resume)
      this.unlocked++
      launch(task, onError, resume, this.landed)
    })
  }

  /** Runs a read-modify-write of `keys`: exclusive on its keys, after every earlier plain write landed. */
  modify<A, E>(keys: ReadonlyArray<string>, task: () => Promise<A>, onError: (error: unknown) => E): Effect.Effect<A, E> {
    return Effect.async<A, E>((resume) => {
      this.modifying++
      let held: ReadonlyArray<string> | undefined
      let draining: (() => void) | undefined
      let finished = false
      const finish = () => {
        finished = true
        for (const k of held!) this.locks.release(k)
        this.modifying--
      }
      const start = () => {
        draining = undefined
        launch(task, onError, resume, finish)
      }
      const cancelAcquire = this.locks.acquireAll(keys, (taken) => {
        held = taken
        if (this.unlocked === 0) return start()
        draining = start
        this.drainWaiters.push(start)
      })
      return Effect.sync(() => {
        if (finished || (held !== undefined && draining === undefined)) return // running: it cleans up itself
        if (held === undefined) {
          cancelAcquire()
        } else {
          this.drainWaiters = this.drainWaiters.filter((w) => w !== draining)
          for (const k of held) this.locks.release(k)
        }
        this.modifying--
      })
    })
  }
}
