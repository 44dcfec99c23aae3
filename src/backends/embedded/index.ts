/** The embedded default backend: local files plus LevelDB metadata under one home directory. */
export * as EmbeddedLayers from "./EmbeddedLayers.js"
