/**
 * Help, usage errors and routing before @effect/cli runs a command.
 *
 * @effect/cli's own help always prints ANSI escapes, repeats every global
 * option on every command, adds "A user-defined piece of text." to each
 * text option and lists subcommands with their full option usage (lines of
 * 300 columns); a wrong subcommand of a group is reported against the
 * top-level commands. So `--help`, `--version` and unknown subcommands are
 * handled here, from the same descriptors: the texts given to
 * `withDescription` are the single source. Plain text unless stdout is a
 * terminal that accepts colour (Output.colours); lines fit 100 columns.
 *
 * The command tree is read from the descriptors' public shape (`_tag`
 * Standard / Map / Subcommands of @effect/cli 0.77): getSubcommands flattens
 * a group's own subcommands away.
 */
import type * as CliConfig from "@effect/cli/CliConfig"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import type * as HelpDoc from "@effect/cli/HelpDoc"
import type * as Span from "@effect/cli/HelpDoc/Span"

/** Longest help line. */
export const WIDTH = 100

/** The options every command accepts (globals.ts), described once, in the overview. */
export const GLOBAL_OPTIONS = ["--store", "--home", "--layout", "--json"] as const
/** Global options followed by a value (to skip it when looking for command names). */
const GLOBAL_VALUE_OPTIONS = new Set(["--store", "--home", "--layout"])

/** One command of the tree. */
export interface Entry {
  readonly name: string
  /** The command without its subcommands (its own description, arguments and options). */
  readonly own: Descriptor.Command<unknown>
  readonly children: ReadonlyArray<Entry>
}

type Node =
  | { readonly _tag: "Standard" | "GetUserInput"; readonly name: string }
  | { readonly _tag: "Map"; readonly command: Node }
  | { readonly _tag: "Subcommands"; readonly parent: Node; readonly children: ReadonlyArray<Node> }

/** The command tree of a descriptor. */
export const tree = (descriptor: Descriptor.Command<unknown>): Entry => {
  const node = descriptor as unknown as Node
  switch (node._tag) {
    case "Map":
      return tree(node.command as unknown as Descriptor.Command<unknown>)
    case "Subcommands": {
      const parent = tree(node.parent as unknown as Descriptor.Command<unknown>)
      return { ...parent, children: node.children.map((c) => tree(c as unknown as Descriptor.Command<unknown>)) }
    }
    default:
      return { name: node.name, own: descriptor, children: [] }
  }
}

// ---------------------------------------------------------------------------
// Reading @effect/cli's HelpDoc

const spanText = (span: Span.Span): string => {
  switch (span._tag) {
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
    case "Text":
    case "URI":
      return span.value
    default:
      return spanText(span.value)
  }
}

const flatten = (doc: HelpDoc.HelpDoc): Array<HelpDoc.HelpDoc> =>
  doc._tag === "Sequence" ? [...flatten(doc.left), ...flatten(doc.right)] : doc._tag === "Empty" ? [] : [doc]

// @effect/cli's generic sentences: the option's own description says more, the usage shows the rest.
const BOILERPLATE = [
  /^A user-defined piece of text\.$/,
  /^This setting is optional\.$/,
  /^One of the following: /,
  /^A true or false value\.$/,
  /^An integer\.$/,
  /^A floating point number\.$/,
  /^This option may be repeated/
]

/** One argument or option: its name as typed, and its description. */
interface Item {
  readonly term: string
  readonly text: string
  readonly optional: boolean
}

/** What a command's HelpDoc holds, sorted into its sections. */
interface Sections {
  readonly description: string
  readonly args: ReadonlyArray<Item>
  readonly options: ReadonlyArray<Item>
}

const sections = (entry: Entry, config: CliConfig.CliConfig): Sections => {
  let section = ""
  const description: Array<string> = []
  const args: Array<Item> = []
  const options: Array<Item> = []
  for (const block of flatten(Descriptor.getHelp(entry.own, config))) {
    if (block._tag === "Header") section = spanText(block.value)
    else if (block._tag === "Paragraph" && section === "DESCRIPTION") description.push(spanText(block.value))
    else if (block._tag === "DescriptionList") {
      for (const [term, body] of block.definitions) {
        const paragraphs = flatten(body).flatMap((d) => d._tag === "Paragraph" ? [spanText(d.value)] : [])
        // Each withDescription adds a paragraph: the last one is the most specific (verify's <key>).
        const said = paragraphs.filter((p) => !BOILERPLATE.some((re) => re.test(p)))
        const item = {
          term: spanText(term).replace(/^\((.*)\)$/, "$1"),
          text: said[said.length - 1] ?? "",
          optional: paragraphs.includes("This setting is optional.")
        }
        ;(section === "ARGUMENTS" ? args : options).push(item)
      }
    }
  }
  return { description: description.join(" "), args, options }
}

/** The text of a HelpDoc (a parser's error message) on one line. */
export const docText = (doc: HelpDoc.HelpDoc): string =>
  flatten(doc).flatMap((d) =>
    d._tag === "Paragraph" || d._tag === "Header"
      ? [spanText(d.value)]
      : d._tag === "DescriptionList"
      ? d.definitions.map(([term, body]) => `${spanText(term)}: ${docText(body)}`)
      : d._tag === "Enumeration"
      ? d.elements.map(docText)
      : []
  ).join(" ").trim()

const isGlobal = (item: Item): boolean => GLOBAL_OPTIONS.some((o) => item.term === o || item.term.startsWith(`${o} `))

// ---------------------------------------------------------------------------
// Rendering

/** Splits `text` into lines of at most `width` columns (a longer word gets a line of its own). */
export const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  let current = ""
  for (const word of text.split(/\s+/).filter((w) => w.length > 0)) {
    if (current.length > 0 && current.length + 1 + word.length > width) {
      lines.push(current)
      current = word
    } else current = current.length > 0 ? `${current} ${word}` : word
  }
  if (current.length > 0) lines.push(current)
  return lines
}

/** Two columns: terms on the left, wrapped descriptions on the right. */
const table = (rows: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const column = Math.min(30, Math.max(...rows.map(([term]) => term.length))) + 4
  return rows.flatMap(([term, text]) => {
    const body = wrap(text, WIDTH - column)
    const first = term.length + 2 <= column - 2 ? body.shift() : undefined
    const head = first === undefined ? [`  ${term}`] : [`  ${term.padEnd(column - 2)}${first}`]
    return [...head, ...body.map((l) => `${" ".repeat(column)}${l}`)]
  })
}

/** Heading style: bold on a colour terminal. */
export type Style = (heading: string) => string
export const plain: Style = (heading) => heading
export const bold: Style = (heading) => `\x1b[1m${heading}\x1b[0m`

/** The help of one command, `path` being its names from the root (`["graviton", "uploads", "abort"]`). */
export const render = (
  entry: Entry,
  path: ReadonlyArray<string>,
  config: CliConfig.CliConfig,
  style: Style = plain
): string => {
  const s = sections(entry, config)
  const own = s.options.filter((o) => !isGlobal(o))
  const args = s.args.map((a) => (a.optional ? `[${a.term}]` : a.term)).join(" ")
  const usage: Array<string> = []
  if (entry.children.length === 0 || s.args.length > 0) {
    usage.push(`${path.join(" ")} [options]${args.length > 0 ? ` ${args}` : ""}`)
  }
  if (entry.children.length > 0) usage.push(`${path.join(" ")} <command> ...`)
  const out: Array<string> = [`${style("Usage:")} ${usage[0]}`, ...usage.slice(1).map((u) => `       ${u}`), ""]
  out.push(...wrap(s.description, WIDTH), "")
  if (s.args.length > 0) out.push(style("Arguments:"), ...table(s.args.map((a) => [a.term, a.text])), "")
  if (own.length > 0) out.push(style("Options:"), ...table(own.map((o) => [o.term, o.text])), "")
  if (entry.children.length > 0) {
    out.push(style("Commands:"), ...table(entry.children.map((c) => [c.name, sections(c, config).description])), "")
  }
  out.push(`Global options (${GLOBAL_OPTIONS.join(", ")}): see graviton --help.`)
  return `${out.join("\n")}\n`
}

// ---------------------------------------------------------------------------
// Routing

/** What the command line asks for, as far as help and command names go. */
export type Route =
  | { readonly _tag: "Run"; readonly path: ReadonlyArray<string> }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Help"; readonly entry: Entry; readonly path: ReadonlyArray<string> }
  | { readonly _tag: "UnknownCommand"; readonly word: string; readonly entry: Entry; readonly path: ReadonlyArray<string> }

const hasArgs = (entry: Entry, config: CliConfig.CliConfig): boolean => sections(entry, config).args.length > 0

/**
 * Follows the command names in `args` (the command line after the
 * executable) down the tree: `--help`/`-h` anywhere asks for the help of the
 * deepest command named, `--version` for the version, a word where a group
 * expects a subcommand is an unknown command, and a group in `bareHelp`
 * (its path, `"graviton uploads"`: a group that does nothing by itself)
 * named without a subcommand shows its help. (Whether a command has a
 * handler of its own cannot be read from its descriptor: a group like
 * `replicate targets` that lists something when named alone is left to run.)
 */
export const route = (
  root: Entry,
  args: ReadonlyArray<string>,
  config: CliConfig.CliConfig,
  bareHelp: ReadonlySet<string> = new Set()
): Route => {
  let entry = root
  const path = [root.name]
  let help = false
  let version = false
  let positional = false
  let unknown: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") break
    if (arg === "--help" || arg === "-h") help = true
    else if (arg === "--version") version = true
    else if (arg.startsWith("-")) {
      if (GLOBAL_VALUE_OPTIONS.has(arg)) i++
    } else if (!positional && unknown === undefined) {
      const child = entry.children.find((c) => c.name === arg)
      if (child !== undefined) {
        entry = child
        path.push(arg)
      } else if (bareHelp.has(path.join(" ")) || (entry === root && !hasArgs(entry, config))) unknown = arg
      else positional = true
    }
  }
  if (help) return { _tag: "Help", entry, path }
  if (version) return { _tag: "Version" }
  if (unknown !== undefined) return { _tag: "UnknownCommand", word: unknown, entry, path }
  if (bareHelp.has(path.join(" ")) && !positional) {
    return { _tag: "Help", entry, path }
  }
  return { _tag: "Run", path }
}

/** The usage error for an unknown subcommand: it names the commands that exist there. */
export const unknownCommand = (route: Extract<Route, { _tag: "UnknownCommand" }>): string =>
  `unknown command ${JSON.stringify(route.word)} for ${route.path.join(" ")}; ` +
  `use one of: ${route.entry.children.map((c) => c.name).join(", ")} (see ${route.path.join(" ")} --help)`
