/** The storage lifecycle: gc, check (and repair, index rebuild), stats. See Lifecycle.ts. */
export * as Lifecycle from "./Lifecycle.js"
export * as LifecycleMetrics from "./LifecycleMetrics.js"
