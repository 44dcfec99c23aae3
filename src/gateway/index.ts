/**
 * `graviton/gateway`: the HTTP gateway over a BlobStore (blobs with Range
 * and immutable caching, tus uploads, /metrics, bearer tokens); see
 * docs/gateway.md.
 */
export * as Gateway from "./Gateway.js"
export * as GatewayConfig from "./GatewayConfig.js"
export * as GatewayHeaders from "./headers.js"
