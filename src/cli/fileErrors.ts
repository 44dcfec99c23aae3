/** The failure of a local file operation (put's input, get's output) as a sentence and an exit code. */
import { type CliFailure, ExitCode, fail } from "./exitCodes.js"
import { escapeControls } from "./output.js"

/** Turns a Node error on a local file into a sentence and an exit code (the name shown with controls escaped). */
export const fileFailure = (what: string, name: string, error: unknown): CliFailure => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  const file = escapeControls(name)
  switch (code) {
    case "ENOENT":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: no such file or directory`)
    case "EACCES":
    case "EPERM":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: permission denied`)
    case "EISDIR":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: it is a directory`)
    case "ENOTDIR":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: a parent of it is not a directory`)
    case "ENAMETOOLONG":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: the file name is too long`)
    case "ELOOP":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: too many levels of symbolic links`)
    case "ENOSPC":
      return fail(ExitCode.Storage, `cannot ${what} ${file}: no space left on the device`)
    default:
      return fail(
        ExitCode.Storage,
        `cannot ${what} ${file}: ${escapeControls((error as Error | undefined)?.message ?? String(error))}`
      )
  }
}
