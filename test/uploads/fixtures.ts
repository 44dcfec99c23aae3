/** Helpers shared by the Uploads test files. */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"

/** How many objects (segments, temporaries) the object staging holds for upload `id` under `scheme://bucket/path`. */
export const stagedObjects = (scheme: string, bucket: string, path: string) => (id: string) =>
  Effect.flatMap(MutableObjectStore, (objects) =>
    Effect.map(
      Stream.runCollect(objects.list(Either.getOrThrow(BlobLocator.makePrefix(scheme, bucket, `${path}${id}/`)))),
      Chunk.size
    ))
