/**
 * The `whoami` and `tf-config` subcommands: read the Corefile's idetcd block
 * and ask etcd who this node is.
 *
 * @module
 */

import { CorefileError, type Directive } from "../../corefile/types.ts";
import type { LoadedCorefile } from "../../server/load.ts";
import { parseIdetcd, tfConfig, whoami } from "./mod.ts";

/** The subcommand names main.ts accepts. */
export const SUBCOMMANDS = ["whoami", "tf-config"] as const;

function idetcdDirectives(corefile: LoadedCorefile): Directive[] {
  for (const block of corefile.blocks) {
    const found = block.directives.filter((d) => d.name.text === "idetcd");
    if (found.length) return found;
  }
  throw new CorefileError(
    `no idetcd block in ${corefile.source}; the ${SUBCOMMANDS.join(" and ")} subcommands need one`,
  );
}

/**
 * Runs a subcommand and returns what to print:
 * - `whoami`: `4 worker4.tf.local.` (ID, then name);
 * - `tf-config`: the TF_CONFIG JSON for this node.
 */
export async function runSubcommand(name: string, corefile: LoadedCorefile): Promise<string> {
  const config = parseIdetcd(idetcdDirectives(corefile), corefile.dir);
  switch (name) {
    case "whoami": {
      const me = await whoami(config);
      return `${me.id} ${me.name}`;
    }
    case "tf-config":
      return JSON.stringify(await tfConfig(config));
    default:
      throw new Error(`unknown subcommand ${name}; use ${SUBCOMMANDS.join(" or ")}`);
  }
}
