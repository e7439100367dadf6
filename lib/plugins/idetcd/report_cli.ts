/**
 * `idetcd status` and `idetcd hosts`: argument parsing, output and exit
 * codes around status.ts and hosts.ts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { rootLog } from "../../log.ts";
import { HostsUsageError, parseHostsArgs, readHosts, watchHosts } from "./hosts.ts";
import { HOST_FORMATS } from "./presets.ts";
import type { IdetcdConfig } from "./setup.ts";
import { EXIT_MISSING, formatStatus, readStatus } from "./status.ts";

/** `idetcd status`'s usage. */
export const STATUS_USAGE = `Usage: idetcd [-conf FILE] status [--json]

Every ID from 1 to limit: name, role, addresses, identity, claimed since,
seconds left on its lease, and the empty slots, read from etcd once.

  --json   one JSON object instead of the table

Exit: 0 every ID is claimed; ${EXIT_MISSING} some are empty; 1 error (etcd unreachable); 2 usage.
`;

/** `idetcd hosts`'s usage. */
export const HOSTS_USAGE =
  `Usage: idetcd [-conf FILE] hosts [--format FORMAT] [--slots N] [--port N] [--watch FILE]

The members in ID order as a host list.

  --format FORMAT  ${HOST_FORMATS.join(", ")} (default plain):
                   plain one name a line; mpi and deepspeed "name slots=N";
                   hosts /etc/hosts lines; file_sd Prometheus file_sd JSON
  --slots N        slots per host (mpi, deepspeed; default 1)
  --port N         the port of every file_sd target (default: each member's port)
  --watch FILE     keep FILE up to date on every membership change (written
                   atomically, only when it changes) until SIGTERM or SIGINT

Exit: 0 done (or stopped by a signal with --watch); 1 error (etcd unreachable
without --watch, FILE not writable); 2 usage.
`;

/** A usage error of `status`. */
class StatusUsageError extends Error {}

/** Parses `status`'s arguments: `--json` (also `-json`, Go style). */
function parseStatusArgs(args: string[]): { json: boolean } {
  try {
    const { values, positionals } = parseArgs({
      args: args.map((a) => (/^-[^-]/.test(a) && a.length > 2 ? "-" + a : a)),
      strict: true,
      allowPositionals: true,
      options: { json: { type: "boolean" } },
    });
    if (positionals.length > 0) {
      throw new StatusUsageError(`unexpected arguments: ${positionals.join(" ")}`);
    }
    return { json: values.json ?? false };
  } catch (err) {
    if (err instanceof StatusUsageError) throw err;
    const flag = /'(-{1,2}[^' ]+)/.exec((err as Error).message)?.[1];
    throw new StatusUsageError(
      flag ? `flag provided but not defined: ${flag.replace(/^-+/, "--")}` : (err as Error).message,
    );
  }
}

/**
 * Resolves on the first SIGTERM or SIGINT. The listeners stay until the process exits:
 * removing the last one restores the default action, and a second signal that a shell
 * or deno task passes on late would then end a clean stop with 143.
 */
function stopSignal(): { stopped: Promise<Deno.Signal> } {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => resolve(signal));
  }
  return { stopped: promise };
}

/** Writes all of `text` to stdout as is (writeSync may take only part of it into a pipe). */
function writeOut(text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}

async function runStatus(args: string[], config: IdetcdConfig): Promise<number> {
  let json: boolean;
  try {
    ({ json } = parseStatusArgs(args));
  } catch (err) {
    console.error(`idetcd status: ${(err as Error).message}\n${STATUS_USAGE}`);
    return 2;
  }
  let report;
  try {
    report = await readStatus(config);
  } catch (err) {
    console.error((err as Error).message);
    return 1;
  }
  if (json) console.log(JSON.stringify(report, null, 2));
  else writeOut(formatStatus(report));
  return report.complete ? 0 : EXIT_MISSING;
}

async function runHosts(args: string[], config: IdetcdConfig): Promise<number> {
  let options;
  try {
    options = parseHostsArgs(args);
  } catch (err) {
    if (!(err instanceof HostsUsageError)) throw err;
    console.error(`idetcd hosts: ${err.message}\n${HOSTS_USAGE}`);
    return 2;
  }
  const watch = options.watch;
  if (watch === undefined) {
    let text;
    try {
      text = await readHosts(config, options);
    } catch (err) {
      console.error((err as Error).message);
      return 1;
    }
    // Bytes as formatted: console.log would add a newline after the list's own last one.
    writeOut(text);
    return 0;
  }
  return await watchHosts(config, { ...options, watch }, {
    log: rootLog,
    say: (line) => console.error(line),
    stop: stopSignal().stopped,
  });
}

/** Runs `status` or `hosts` with its own arguments; resolves with the exit code. */
export function runReport(name: string, args: string[], config: IdetcdConfig): Promise<number> {
  if (args[0] === "-h" || args[0] === "--help") {
    console.log(name === "status" ? STATUS_USAGE : HOSTS_USAGE);
    return Promise.resolve(0);
  }
  if (name === "status") return runStatus(args, config);
  if (name === "hosts") return runHosts(args, config);
  console.error(`idetcd: unknown subcommand ${name}`);
  return Promise.resolve(2);
}
