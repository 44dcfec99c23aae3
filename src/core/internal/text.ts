/** Small text checks shared by the parsers in src/core. */

/** C0 controls, DEL and C1 controls (U+0080..U+009F). */
export const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Lone surrogates cannot be encoded in UTF-8, hence cannot be stored anywhere. */
export const hasLoneSurrogate = (s: string): boolean => LONE_SURROGATE.test(s)

/** Length of `s` in UTF-8 bytes. */
export const utf8Length = (s: string): number => Buffer.byteLength(s, "utf8")
