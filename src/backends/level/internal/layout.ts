/**
 * Where a Graviton key lives inside the one LevelDB database.
 *
 * Each declared namespace is a sublevel: key `blobs/abc` is stored as `abc`
 * in sublevel `blobs`, i.e. under the physical key `!blobs!abc` (the prefix
 * `db.sublevel("blobs")` uses, so the data reads the same through the
 * sublevel API). A key outside every declared namespace has no place here:
 * the store refuses it (it once went to a shared `default` sublevel, which
 * laid out the same keys differently depending on the list a caller gave).
 * The hot paths address the root database with these physical keys
 * directly: it is the same layout, minus a second pass through
 * abstract-level's encoding per call.
 *
 * Order. Within one sublevel LevelDB sorts by bytes of `prefix + rest`,
 * which is the UTF-8 byte order of the full keys; a listing that spans
 * sublevels merges them (see `compareKeys`).
 */

/** One sublevel to scan for a listing, with how to turn its physical keys back into full keys. */
export interface Source {
  readonly namespace: string
  /** Physical keys of this source are `>= gte` and `< lt` (no upper bound when undefined). */
  readonly gte: string
  readonly lt: string | undefined
  /** Length of the sublevel prefix to strip from physical keys. */
  readonly strip: number
  /** Text to put back in front: `<ns>/`. */
  readonly restore: string
}

/** Maps keys to physical keys and listing prefixes to sublevel ranges. */
export class Layout {
  /** Namespace -> physical prefix (`!ns!`). */
  private readonly prefixes: Map<string, string>

  constructor(
    readonly namespaces: ReadonlyArray<string>,
    prefixOf: (namespace: string) => string
  ) {
    this.prefixes = new Map(namespaces.map((ns) => [ns, prefixOf(ns)]))
  }

  /** The declared namespace a full key is stored in, or undefined when it is in none. */
  namespaceOf(key: string): string | undefined {
    const slash = key.indexOf("/")
    if (slash <= 0) return undefined
    const ns = key.slice(0, slash)
    return this.prefixes.has(ns) ? ns : undefined
  }

  /** The physical key of a full key whose namespace is declared (see `namespaceOf`). */
  physical(key: string): string {
    const slash = key.indexOf("/")
    return this.prefixes.get(key.slice(0, slash))! + key.slice(slash + 1)
  }

  /** The physical prefix of a namespace, undefined when it is not declared. */
  prefixOf(namespace: string): string | undefined {
    return this.prefixes.get(namespace)
  }

  /** The whole physical range of a namespace's sublevel. */
  rangeOf(namespace: string): readonly [string, string] | undefined {
    const prefix = this.prefixOf(namespace)
    return prefix === undefined ? undefined : [prefix, upperBound(prefix)!]
  }

  /**
   * The sublevels holding keys that start with `prefix`, each with its
   * physical range. A prefix inside a namespace (`blobs/ab`) touches that
   * sublevel only; a shorter one (`bl`, "") touches every namespace it is a
   * prefix of. Undefined when the prefix lies inside an undeclared namespace.
   */
  sources(prefix: string): ReadonlyArray<Source> | undefined {
    const out: Array<Source> = []
    for (const [ns, physical] of this.prefixes) {
      const head = `${ns}/`
      if (prefix.startsWith(head)) {
        // Every key under `<ns>/` is in that sublevel and nowhere else.
        return [source(ns, physical, prefix.slice(head.length), head)]
      }
      if (head.startsWith(prefix)) out.push(source(ns, physical, "", head))
    }
    return prefix.indexOf("/") > 0 ? undefined : out
  }
}

const source = (namespace: string, physical: string, rest: string, restore: string): Source => {
  const gte = physical + rest
  return { namespace, gte, lt: upperBound(gte), strip: physical.length, restore }
}

/**
 * The smallest string greater than every string starting with `prefix`, in
 * code point (= UTF-8 byte) order: the prefix with its last code point
 * incremented (skipping the surrogate block), dropping trailing U+10FFFF.
 * Undefined when there is none (empty prefix, or only U+10FFFF).
 */
export const upperBound = (prefix: string): string | undefined => {
  const points = Array.from(prefix)
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!
    if (last < 0x10ffff) {
      const next = last === 0xd7ff ? 0xe000 : last + 1
      return points.join("") + String.fromCodePoint(next)
    }
  }
  return undefined
}

/**
 * Compares well-formed strings by code point, which is the order of their
 * UTF-8 bytes. JavaScript's `<` compares UTF-16 units, which puts U+E000..U+FFFF
 * after astral characters; shifting the unit values fixes exactly that.
 */
export const compareKeys = (a: string, b: string): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i)
    let y = b.charCodeAt(i)
    if (x !== y) {
      if (x >= 0xd800) x = x >= 0xe000 ? x - 0x800 : x + 0x2000
      if (y >= 0xd800) y = y >= 0xe000 ? y - 0x800 : y + 0x2000
      return x - y
    }
  }
  return a.length - b.length
}
