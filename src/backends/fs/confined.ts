/**
 * Every path the fs store and its upload staging touch goes through here:
 * directories are opened one component at a time from a descriptor held on
 * the root, each with O_NOFOLLOW | O_DIRECTORY, and the final open, stat,
 * rename, link, unlink or rmdir names its file relative to the descriptor
 * of its parent. No symbolic link below the root is ever followed: one met
 * on the way fails with PermissionDenied (the store never writes one, so it
 * was planted by someone else).
 *
 * Why this cannot be raced (Linux): Node has no openat(2), but a path
 * `/proc/self/fd/<n>/<name>` is resolved by the kernel from descriptor n
 * (the magic link jumps to the open directory itself, not to a path that is
 * looked up again), so it is openat(n, name). Once a directory is open, a
 * link swapped in at its path later changes nothing for us; and the next
 * component is again opened with O_NOFOLLOW. The final component: open uses
 * O_NOFOLLOW (a link fails with ELOOP), O_CREAT|O_EXCL never follows, lstat,
 * rename, link, unlink and rmdir act on the link itself, not its target.
 * So a rename needs no before/after check of its parents: both are held
 * descriptors, not paths.
 *
 * What remains: a directory we hold may be moved elsewhere (on the same
 * filesystem) by someone who can write both into the home and into that
 * other place; an operation in flight then lands in the moved directory,
 * which is where that person put it. Root's own ancestors are trusted: the
 * root is resolved once, when the store starts.
 *
 * Where /proc/self/fd is not usable (macOS, BSD, a container without /proc)
 * the same walk runs on real paths: each component is still opened with
 * O_NOFOLLOW and checked (fstat of what was opened against lstat of the
 * path), but the kernel resolves the path again at the final call, so a
 * directory swapped for a link between the check and that call is followed.
 * That window is the residual risk there, and `racefree` says which mode runs.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as NFS from "node:fs"
import * as Path from "node:path"
import type { ObjectStoreError } from "../../core/Errors.js"
import { errnoCode, fromFileSystem, fsError, isMissing } from "./errors.js"

const C = NFS.constants
const DIRECTORY = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW
/** Added to every open of a file: a symbolic link in last place fails with ELOOP. */
export const NOFOLLOW = C.O_NOFOLLOW

/** Modes of what the store creates (the process umask still applies). */
export interface Modes {
  readonly file: number
  readonly directory: number
}

/**
 * Who may read what the store writes: "private" (default; directories 0700,
 * files 0600, as restic's repositories), "shared" (0755 / 0644: anyone on the
 * machine reads), or explicit modes.
 */
export type Permissions = "private" | "shared" | Modes

export const modesOf = (permissions: Permissions | undefined): Modes =>
  permissions === undefined || permissions === "private"
    ? { file: 0o600, directory: 0o700 }
    : permissions === "shared"
    ? { file: 0o644, directory: 0o755 }
    : permissions

/** An open directory at or below the root. */
export interface Dir {
  readonly fd: number
  /** Its path (for messages, and the path-based fallback). */
  readonly path: string
  /** A path naming `name` in this directory that the kernel resolves from the descriptor (see the module comment). */
  readonly at: (name: string) => string
}

/** The root, held open while the store lives. */
export interface Root {
  readonly dir: Dir
  readonly modes: Modes
  /** True when every lookup is descriptor-relative (/proc/self/fd); false in the path-based fallback. */
  readonly racefree: boolean
}

const dirOf = (fd: number, path: string, racefree: boolean): Dir => ({
  fd,
  path,
  at: racefree ? (name) => `/proc/self/fd/${fd}/${name}` : (name) => Path.join(path, name)
})

const closeQuietly = (fd: number) => {
  try {
    NFS.closeSync(fd)
  } catch {
    // Already closed or never valid: nothing to release.
  }
}

/** The PermissionDenied for a symbolic link met at `path`. */
export const linkRefused = (method: string, path: string): ObjectStoreError =>
  fsError(method, "PermissionDenied", `${path} is a symbolic link; the store follows none below its root`)

const isLink = (p: string) => {
  try {
    return NFS.lstatSync(p).isSymbolicLink()
  } catch {
    return false
  }
}

/**
 * Opens (creating it with `modes.directory` when missing, if asked) the directory `path` under root,
 * makes it `root`, and holds it for the scope. `racefree: false` forces the path-based fallback (tests).
 */
export const openRoot = (
  method: string,
  path: string,
  modes: Modes,
  options: { readonly racefree?: boolean } = {}
): Effect.Effect<Root, ObjectStoreError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        await NFS.promises.mkdir(path, { recursive: true, mode: modes.directory })
        const real = await NFS.promises.realpath(Path.resolve(path))
        const fd = NFS.openSync(real, C.O_RDONLY | C.O_DIRECTORY)
        let racefree = options.racefree ?? true
        if (racefree) {
          // The magic link must lead to this very directory, or the fallback runs.
          try {
            const viaProc = NFS.statSync(`/proc/self/fd/${fd}/.`)
            const held = NFS.fstatSync(fd)
            racefree = viaProc.ino === held.ino && viaProc.dev === held.dev
          } catch {
            racefree = false
          }
        }
        return { dir: dirOf(fd, real, racefree), modes, racefree }
      },
      catch: fromFileSystem(method, `preparing root ${path}`)
    }),
    (root) => Effect.sync(() => closeQuietly(root.dir.fd))
  )

/** Opens `name` in `parent` as a directory, never through a link; creates it first when `create`. */
const step = (method: string, root: Root, parent: Dir, name: string, create: boolean): Dir => {
  const p = parent.at(name)
  const path = Path.join(parent.path, name)
  const open = (): number => {
    const fd = NFS.openSync(p, DIRECTORY)
    if (!root.racefree) {
      // What was opened must be what is at the path now (narrows the fallback's window).
      const held = NFS.fstatSync(fd)
      const there = NFS.lstatSync(p)
      if (held.ino !== there.ino || held.dev !== there.dev) {
        closeQuietly(fd)
        throw linkRefused(method, path)
      }
    }
    return fd
  }
  try {
    try {
      return dirOf(open(), path, root.racefree)
    } catch (e) {
      if (!create || errnoCode(e) !== "ENOENT") throw e
      try {
        NFS.mkdirSync(p, root.modes.directory)
      } catch (made) {
        if (errnoCode(made) !== "EEXIST") throw made
      }
      return dirOf(open(), path, root.racefree)
    }
  } catch (e) {
    // O_NOFOLLOW|O_DIRECTORY on a link says ENOTDIR (or ELOOP): tell a link from a file in the way.
    const code = errnoCode(e)
    if ((code === "ENOTDIR" || code === "ELOOP") && isLink(p)) throw linkRefused(method, path)
    throw e
  }
}

/** The directories from `base` down through `segments`, each open; the caller closes all but `base`. */
export type Chain = ReadonlyArray<Dir>

const walk = (method: string, root: Root, base: Dir, segments: ReadonlyArray<string>, create: boolean): Chain => {
  const chain: Array<Dir> = [base]
  try {
    for (const s of segments) chain.push(step(method, root, chain[chain.length - 1]!, s, create))
    return chain
  } catch (e) {
    release(chain)
    throw e
  }
}

const release = (chain: Chain) => {
  for (const d of chain.slice(1)) closeQuietly(d.fd)
}

/**
 * Runs `use` with the chain of directories from `base` through `segments` open (created when
 * `create`), closing them afterwards. Fails with the errno error of a missing or non-directory
 * component (see errors.isMissing), or PermissionDenied for a symbolic link.
 */
export const withDir = <A, E, R>(
  method: string,
  root: Root,
  base: Dir,
  segments: ReadonlyArray<string>,
  create: boolean,
  use: (chain: Chain) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | ObjectStoreError, R> =>
  Effect.acquireUseRelease(
    Effect.try({
      // Directory lookups are served from the dentry cache in about a microsecond: done in line,
      // where a trip through the thread pool per component would cost more than the call.
      try: () => walk(method, root, base, segments, create),
      catch: fromFileSystem(method, Path.join(base.path, ...segments))
    }),
    use,
    (chain) => Effect.sync(() => release(chain))
  )

/** The last directory of a chain. */
export const last = (chain: Chain): Dir => chain[chain.length - 1]!

/** Maps an open's ELOOP (a link in last place under O_NOFOLLOW) to PermissionDenied. */
export const refuseLink = (method: string, path: string) => (e: unknown): ObjectStoreError =>
  errnoCode(e) === "ELOOP" ? linkRefused(method, path) : fromFileSystem(method, path)(e)

/**
 * Removes the now-empty directories of `chain` below index `keep` (exclusive), deepest first; stops
 * at the first that is not empty. Each is removed by name from its held parent: rmdir never follows.
 */
export const prune = (chain: Chain, keep: number): Effect.Effect<void> =>
  Effect.sync(() => {
    for (let i = chain.length - 1; i > keep; i--) {
      try {
        NFS.rmdirSync(chain[i - 1]!.at(Path.basename(chain[i]!.path)))
      } catch {
        return
      }
    }
  })

/**
 * Opens the chain from `base` through `segments` (created when `create`) for the scope and gives
 * its last directory (base itself for no segments).
 */
export const openScoped = (
  method: string,
  root: Root,
  base: Dir,
  segments: ReadonlyArray<string>,
  create: boolean
): Effect.Effect<Dir, ObjectStoreError, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.try({ try: () => walk(method, root, base, segments, create), catch: fromFileSystem(method, Path.join(base.path, ...segments)) }),
      (chain) => Effect.sync(() => release(chain))
    ),
    last
  )

/**
 * Like `withDir`, but a missing directory (when not creating) gives `use` None instead of failing;
 * failures of `use` itself pass through untouched.
 */
export const withOptionalDir = <A, E, R>(
  method: string,
  root: Root,
  base: Dir,
  segments: ReadonlyArray<string>,
  create: boolean,
  use: (chain: Option.Option<Chain>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | ObjectStoreError, R> =>
  Effect.acquireUseRelease(
    Effect.try({
      try: (): Option.Option<Chain> => {
        try {
          return Option.some(walk(method, root, base, segments, create))
        } catch (e) {
          if (!create && isMissing(e)) return Option.none()
          throw e
        }
      },
      catch: fromFileSystem(method, Path.join(base.path, ...segments))
    }),
    use,
    (chain) => Effect.sync(() => Option.map(chain, release))
  )
