/** The lifecycle suite on the memory store (CasBlobStore over in-memory ports, with resumable uploads). */
import { memoryStore } from "./stores.js"
import { lifecycleSuite } from "./suite.js"

lifecycleSuite({ name: "memory", layer: memoryStore })
