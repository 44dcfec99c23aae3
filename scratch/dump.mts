import * as Descriptor from "@effect/cli/CommandDescriptor"
import * as CliConfig from "@effect/cli/CliConfig"
import { verify } from "../src/cli/commands/verify.js"
import { get } from "../src/cli/commands/get.js"
import { upload } from "../src/cli/commands/upload.js"
const cfg = CliConfig.make({ showBuiltIns: false })
for (const c of [verify, get, upload]) console.log(JSON.stringify(Descriptor.getHelp(c.descriptor, cfg), null, 0).slice(0, 3000))
