/**
 * The subcommands: `whoami`, `tf-config`, `exec`, `status` and `hosts` read
 * the Corefile's idetcd block and ask etcd (or run the job, for `exec`).
 *
 * @module
 */

import { CorefileError, type Directive } from "../../corefile/types.ts";
import type { Logger } from "../../log.ts";
import type { LoadedCorefile } from "../../server/load.ts";
import {
  type EmbeddedServer,
  ExecUsageError,
  EXIT_BARRIER_TIMEOUT,
  EXIT_NAME_LOST,
  parseExecArgs,
  runExec,
} from "./exec.ts";
import { parseIdetcd, tfConfig, whoami } from "./mod.ts";

/** The subcommand names main.ts accepts. */
export const SUBCOMMANDS = ["whoami", "tf-config", "exec", "status", "hosts"] as const;

/** What main.ts lends the subcommands. */
export interface CliHooks {
  /** Starts the Corefile's server in-process (for `exec` on a node with no server). */
  serve(): Promise<EmbeddedServer>;
  /** The logger `exec` reports through (its DEBUG lines, as the server's would be). */
  log: Logger;
  /** One line for an error (CorefileError gets its file:line form). */
  describe(err: unknown): string;
}

/** `idetcd exec`'s usage. */
export const EXEC_USAGE = `Usage: idetcd [-conf FILE] exec [options] -- CMD [ARGS...]

Runs CMD under this node's name. With a server running on this node (the
service) exec uses its claim; otherwise exec is the server for CMD's lifetime.

  --wait-all               wait until every ID 1..limit is claimed
  --wait-min N             wait until at least N names are claimed
  --wait-timeout DURATION  give up waiting after this long (default: forever)
  --preset NAME            torch, jax, tf, mpi, deepspeed (repeatable)
  --grace DURATION         SIGTERM to SIGKILL when the name is lost
                           (default: the fence margin less 0.6 s)
  --coordinator-port N     MASTER_PORT / JAX coordinator port (default 29500)
  --coordinator-role ROLE  the coordinator is this role's first member
                           (default: the lowest ID)
  --slots N                slots per host in mpi/deepspeed host files (default 1)
  --role ROLE              the role to claim in (when exec is the server)
  --hostfile-dir DIR       where the mpi/deepspeed host files go
  --service UNIT           the systemd unit of this node's server (default idetcd)

Environment of CMD: IDETCD_ID, IDETCD_NAME, IDETCD_INDEX, IDETCD_SIZE,
IDETCD_MEMBERS, IDETCD_COORDINATOR, IDETCD_FENCE (and IDETCD_ROLE,
IDETCD_ROLE_INDEX, IDETCD_ROLE_SIZE with roles), plus each preset's.

Exit: CMD's code (128+N after signal N); ${EXIT_BARRIER_TIMEOUT} the wait timed out; ${EXIT_NAME_LOST} the node
lost its name and CMD was stopped; 1 no name could be had; 2 usage.
`;

function idetcdDirectives(corefile: LoadedCorefile): Directive[] {
  for (const block of corefile.blocks) {
    const found = block.directives.filter((d) => d.name.text === "idetcd");
    if (found.length) return found;
  }
  throw new CorefileError(
    `no idetcd block in ${corefile.source}; the ${SUBCOMMANDS.join(", ")} subcommands need one`,
  );
}

/**
 * Runs a subcommand with its own arguments and returns the exit code:
 * - `whoami`: prints `4 worker4.tf.local.` (ID, then name);
 * - `tf-config`: prints the TF_CONFIG JSON for this node;
 * - `exec`: see exec.ts;
 * - `status` and `hosts`: see status.ts and hosts.ts.
 */
export async function runSubcommand(
  name: string,
  args: string[],
  corefile: LoadedCorefile,
  hooks: CliHooks,
): Promise<number> {
  if (name === "exec" && (args[0] === "-h" || args[0] === "--help")) {
    console.log(EXEC_USAGE);
    return 0;
  }
  const config = parseIdetcd(idetcdDirectives(corefile), corefile.dir);
  switch (name) {
    case "whoami": {
      const me = await whoami(config);
      console.log(`${me.id} ${me.name}`);
      return 0;
    }
    case "tf-config":
      console.log(JSON.stringify(await tfConfig(config)));
      return 0;
    case "exec": {
      let options;
      try {
        options = parseExecArgs(args);
      } catch (err) {
        if (!(err instanceof ExecUsageError)) throw err;
        console.error(`${err.message}\n${EXEC_USAGE}`);
        return 2;
      }
      return await runExec(options, {
        config,
        log: hooks.log,
        serve: hooks.serve,
        say: (line) => console.error(line),
      });
    }
    default: {
      const { runReport } = await import("./report_cli.ts");
      return await runReport(name, args, config);
    }
  }
}
