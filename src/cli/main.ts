/** The `graviton` command line: the commands arrive with the CAS/CLI issue; for now it explains itself. */
const help = `graviton — content-addressed blob storage on Effect

Usage: graviton <command> [options]

The command set (put, get, cat, stat, rm, ls, verify, metrics) is being built;
this build provides the library: ports, core values and the memory and
filesystem backends. See README.md.
`
process.stdout.write(help)
