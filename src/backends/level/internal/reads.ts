/**
 * Coalescing of point reads. While a read is in flight, further reads
 * queue up and leave together in one `getMany` as soon as a slot frees up:
 * one native call (one trip through libuv's thread pool) serves all of them.
 * A lone reader never waits: with nothing in flight its read goes straight
 * to `db.get`. Every read still observes every write that completed before
 * it was issued, since it is dispatched no earlier than it was issued.
 */

/** Callbacks of one queued read. */
interface Pending {
  readonly key: string
  readonly onValue: (value: Uint8Array | undefined) => void
  readonly onError: (error: unknown) => void
}

/** The two classic-level calls the reader needs. */
export interface PointReads {
  get(key: string): Promise<Uint8Array | undefined>
  getMany(keys: Array<string>): Promise<Array<Uint8Array | undefined>>
}

export class CoalescingReader {
  private inflight = 0
  private queue: Array<Pending> = []

  /** `slots`: native reads allowed in flight at once; more callers than that share `getMany` calls. */
  constructor(private readonly db: PointReads, private readonly slots: number) {}

  /** Reads one key; exactly one callback is called, later (never synchronously). */
  read(key: string, onValue: (value: Uint8Array | undefined) => void, onError: (error: unknown) => void): void {
    if (this.inflight < this.slots) {
      this.inflight++
      let promise: Promise<Uint8Array | undefined>
      try {
        promise = this.db.get(key)
      } catch (error) {
        promise = Promise.reject(error)
      }
      promise.then(
        (value) => {
          this.settled()
          onValue(value)
        },
        (error) => {
          this.settled()
          onError(error)
        }
      )
    } else {
      this.queue.push({ key, onValue, onError })
    }
  }

  private settled(): void {
    this.inflight--
    if (this.queue.length > 0) this.flush()
  }

  private flush(): void {
    const batch = this.queue
    this.queue = []
    this.inflight++
    let promise: Promise<Array<Uint8Array | undefined>>
    try {
      promise = this.db.getMany(batch.map((p) => p.key))
    } catch (error) {
      promise = Promise.reject(error)
    }
    promise.then(
      (values) => {
        this.settled()
        for (let i = 0; i < batch.length; i++) batch[i]!.onValue(values[i])
      },
      (error) => {
        this.settled()
        for (const p of batch) p.onError(error)
      }
    )
  }
}
