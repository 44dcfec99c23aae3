/** One put in progress, as the monolithic and chunked layouts each open it. */
import type * as Effect from "effect/Effect"
import type * as Sink from "effect/Sink"
import type * as BinaryKey from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import type { Stored } from "./publish.js"

/** What `publish` did with a put's content, with what the put's report counts. */
export interface Published extends Stored {
  /** Content bytes this put newly stored (0 when deduplicated; the new blocks only, chunked). */
  readonly bytesWritten: number
  /** Objects the blob is made of. */
  readonly blocks: number
}

export interface Staging {
  /** Receives the input once hashed and size-checked; chunks may be lent (core/Lending). */
  readonly sink: Sink.Sink<unknown, Uint8Array, never, BlobError>
  /** Called once the input has ended and its key matched the plan: stores the content under `key`, or finds it stored. */
  readonly publish: (key: BinaryKey.BinaryKey) => Effect.Effect<Published, BlobError>
}
