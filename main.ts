/**
 * idetcd: collision-free node names in etcd, served over DNS, in one binary.
 *
 * Command line as CoreDNS's (`-conf`, `-dns.port`/`-p`, `-version`,
 * `-plugins`, `-quiet`, `-pidfile`), plus the subcommands `whoami` and
 * `tf-config`. Signals: SIGTERM/SIGINT stop gracefully (releasing the
 * claimed name), SIGUSR1 and SIGHUP reload the Corefile.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CorefileError } from "./lib/corefile/types.ts";
import { rootLog } from "./lib/log.ts";
import { Instance } from "./lib/server/instance.ts";
import { loadCorefile } from "./lib/server/load.ts";
import { PLUGINS } from "./plugins.ts";
import { isUdpChoice, type UdpChoice } from "./lib/server/udp/mod.ts";
import denoJson from "./deno.json" with { type: "json" };

/** The release version. */
export const VERSION: string = denoJson.version;

const USAGE = `Usage: idetcd [flags] [whoami | tf-config | exec ... | status ... | hosts ...]

Flags (one or two dashes, as CoreDNS):
  -conf FILE        Corefile to load ("stdin" reads standard input; default ./Corefile)
  -dns.port N, -p N port for server blocks that name none (default 53)
  -pidfile FILE     write the process ID to FILE
  -plugins          list the plugins and exit
  -quiet            do not print the startup banner
  -udp PATH         UDP: auto (default), batched (recvmmsg, Linux) or portable
                    (Deno.listenDatagram); the IDETCD_UDP variable when not given
  -version          print the version and exit

Subcommands (read the Corefile's idetcd block and ask etcd):
  whoami            this node's claimed ID and name
  tf-config         a TF_CONFIG JSON with every member and this node's role and index
  exec [options] -- CMD [ARGS...]
                    run CMD under this node's name: wait for the cluster, set its
                    environment (IDETCD_*, --preset torch|jax|tf|mpi|deepspeed),
                    stop it when the name is lost (idetcd exec -h)
  status [--json]   every ID: name, role, addresses, identity, lease; empty slots
  hosts --format plain|mpi|deepspeed|hosts|file_sd [--slots N] [--watch FILE]
                    the members in a host-list format
`;

class UsageError extends Error {}

/** Subcommands; they live in the idetcd plugin and are loaded only when used. */
const SUBCOMMANDS = ["whoami", "tf-config", "exec", "status", "hosts"];

/**
 * Splits the command line at the subcommand: the flags before it are
 * idetcd's (CoreDNS's), everything after it is the subcommand's own.
 */
function splitAtSubcommand(argv: string[]): { global: string[]; sub: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (SUBCOMMANDS.includes(a)) return { global: argv.slice(0, i + 1), sub: argv.slice(i + 1) };
    // A flag's value is not a subcommand (`-conf exec` names a file called exec).
    if (/^--?(conf|dns\.port|p|pidfile|udp)$/.test(a)) i++;
  }
  return { global: argv, sub: [] };
}

/** Go's flag package accepts -flag and --flag; node's parseArgs wants --flag for long names. */
function normalizeFlags(args: string[]): string[] {
  return args.map((a) => (/^-[^-]{2,}/.test(a) && !/^-p\d/.test(a) ? "-" + a : a));
}

interface Flags {
  conf?: string;
  port: number;
  pidfile?: string;
  plugins: boolean;
  quiet: boolean;
  udp?: UdpChoice;
  version: boolean;
  help: boolean;
  subcommand?: string;
}

/**
 * parseArgs's error in the words of Go's flag package, which CoreDNS prints:
 * `flag provided but not defined: -bogus`, `flag needs an argument: -conf`.
 * Node's own text suggests `--` and spells the flag with two dashes.
 */
function goFlagError(err: Error & { code?: string }): string {
  const flag = /'(-{1,2}[^' ]+)/.exec(err.message)?.[1]?.replace(/^-+/, "-");
  if (flag === undefined) return err.message;
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return `flag provided but not defined: ${flag.replace(/=.*$/, "")}`;
  }
  if (/does not take an argument/.test(err.message)) {
    return `invalid boolean flag ${flag}: it takes no value`;
  }
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") return `flag needs an argument: ${flag}`;
  return err.message;
}

function parseFlags(argv: string[]): Flags {
  let parsed;
  try {
    parsed = parseArgs({
      args: normalizeFlags(argv),
      strict: true,
      allowPositionals: true,
      options: {
        conf: { type: "string" },
        "dns.port": { type: "string" },
        p: { type: "string" },
        pidfile: { type: "string" },
        plugins: { type: "boolean" },
        quiet: { type: "boolean" },
        udp: { type: "string" },
        version: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError(goFlagError(err as Error & { code?: string }));
  }
  const v = parsed.values;
  const portText = v["dns.port"] ?? v.p ?? "53";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) {
    throw new UsageError(`invalid value "${portText}" for flag -dns.port: not a port number`);
  }
  if (v.udp !== undefined && !isUdpChoice(v.udp)) {
    throw new UsageError(`invalid value "${v.udp}" for flag -udp: want auto, batched or portable`);
  }
  const positionals = parsed.positionals;
  if (
    positionals.length > 1 || (positionals.length === 1 && !SUBCOMMANDS.includes(positionals[0]))
  ) {
    throw new UsageError(`extra command line arguments: ${positionals.join(" ")}`);
  }
  return {
    conf: v.conf,
    port,
    pidfile: v.pidfile,
    plugins: v.plugins ?? false,
    quiet: v.quiet ?? false,
    udp: v.udp as UdpChoice | undefined,
    version: v.version ?? false,
    help: v.help ?? false,
    subcommand: positionals[0],
  };
}

/**
 * One line for `whoami`/`tf-config` when no Corefile was found (or it had no
 * server block): CoreDNS's built-in default has no idetcd block to read, so
 * say which file was looked for and what it must hold.
 */
function noCorefileForSubcommand(subcommand: string): string {
  // The same place loadCorefile looked: ./Corefile of the folder the user ran the command from.
  const path = `${Deno.env.get("INIT_CWD") ?? Deno.cwd()}/Corefile`;
  let found = false;
  try {
    found = Deno.statSync(path).isFile;
  } catch {
    // not there: the usual case
  }
  const what = found ? `${path} has no server block` : `no Corefile at ${path}`;
  return `idetcd ${subcommand}: ${what}; ${subcommand} reads the idetcd block of a Corefile: pass -conf FILE`;
}

function describeError(err: unknown): string {
  if (err instanceof CorefileError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}

function banner(instance: Instance): string {
  const lines: string[] = [];
  for (const block of instance.config?.blocks ?? []) {
    for (const zone of block.zones) lines.push(`${zone}:${block.port}`);
  }
  lines.push(`idetcd-${VERSION}`, `${Deno.build.os}/${Deno.build.arch}, deno ${Deno.version.deno}`);
  return lines.join("\n");
}

async function run(argv: string[]): Promise<number> {
  let flags: Flags;
  const { global, sub } = splitAtSubcommand(argv);
  try {
    flags = parseFlags(global);
  } catch (err) {
    // Go's flag package: the problem on one line, then the usage, exit 2.
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  if (flags.version) {
    console.log(
      `idetcd-${VERSION}\n${Deno.build.os}/${Deno.build.arch}, deno ${Deno.version.deno}`,
    );
    return 0;
  }
  if (flags.plugins) {
    console.log(`Server types:\n  dns\n\nPlugins (in chain order):`);
    for (const p of PLUGINS) console.log(`  dns.${p.name}`);
    return 0;
  }

  let corefile;
  try {
    corefile = await loadCorefile(flags.conf, flags.port, PLUGINS);
  } catch (err) {
    console.error(describeError(err));
    return 1;
  }
  // Reloads (SIGUSR1/SIGHUP, the reload plugin) read the Corefile again; stdin can only be read once.
  const initial = corefile;
  const readCorefile = async () =>
    flags.conf === "stdin"
      ? initial.blocks
      : (await loadCorefile(flags.conf, flags.port, PLUGINS)).blocks;

  if (flags.subcommand) {
    if (corefile.source === "default") {
      console.error(noCorefileForSubcommand(flags.subcommand));
      return 1;
    }
    try {
      const { runSubcommand } = await import("./lib/plugins/idetcd/cli.ts");
      const loaded = corefile;
      return await runSubcommand(flags.subcommand, sub, loaded, {
        // `idetcd exec` on a node with no server running is the server for the command's lifetime.
        serve: async () => {
          const instance = new Instance({
            plugins: PLUGINS,
            defaultPort: flags.port,
            configDir: loaded.dir,
            log: rootLog,
            onFatal: (error) => rootLog.error(describeError(error)),
            readCorefile,
            udp: flags.udp,
          });
          try {
            await instance.start(loaded.blocks);
          } catch (err) {
            await instance.stop().catch(() => {});
            throw new Error(describeError(err));
          }
          return { stop: () => instance.stop() };
        },
        log: rootLog,
        describe: describeError,
      });
    } catch (err) {
      console.error(describeError(err));
      return 1;
    }
  }

  const done = Promise.withResolvers<number>();
  let stopping = false;
  // A plugin's background work gave up (the idetcd claim): log it as main would a start failure, exit 1.
  const onFatal = async (error: Error) => {
    if (stopping) return;
    stopping = true;
    console.error(describeError(error));
    await instance.stop().catch(() => {});
    if (flags.pidfile) await Deno.remove(flags.pidfile).catch(() => {});
    done.resolve(1);
  };
  const instance: Instance = new Instance({
    plugins: PLUGINS,
    defaultPort: flags.port,
    configDir: corefile.dir,
    log: rootLog,
    onFatal: (error) => void onFatal(error),
    readCorefile,
    udp: flags.udp,
  });
  // The signal listeners go in before the start: a SIGTERM that comes while the plugins
  // start (a claim under way, etcd still loading) stops the server once it has started,
  // instead of killing it with the default action.
  let started = false;
  let startup: Promise<void> = Promise.resolve();
  // Instance.reload logs the outcome; stop() waits for a reload under way.
  const reload = (why: string) => void (started && instance.reload(why));
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    rootLog.info(`${signal}: shutting down`);
    await startup.catch(() => {});
    await instance.stop();
    if (flags.pidfile) await Deno.remove(flags.pidfile).catch(() => {});
    done.resolve(0);
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", () => stop("SIGTERM")],
    ["SIGINT", () => stop("SIGINT")],
  ];
  if (Deno.build.os !== "windows") {
    // SIGUSR1 is CoreDNS's reload signal, but Deno (2.9.2 and later) also opens its
    // inspector on 127.0.0.1:9229 when it gets one; SIGHUP reloads without that.
    handlers.push(["SIGUSR1", () => reload("SIGUSR1")], ["SIGHUP", () => reload("SIGHUP")], [
      "SIGQUIT",
      () => Deno.exit(0),
    ]);
  }
  // The listeners stay until the process exits: removing the last one restores the
  // default action, and a late second SIGTERM (deno task forwards the one its process
  // group got) would then end a clean shutdown with 143.
  for (const [sig, fn] of handlers) Deno.addSignalListener(sig, fn);

  startup = instance.start(corefile.blocks);
  try {
    await startup;
  } catch (err) {
    console.error(describeError(err));
    await instance.stop().catch(() => {});
    return 1;
  }
  started = true;
  if (stopping) return await done.promise;
  if (flags.pidfile) {
    try {
      await Deno.writeTextFile(flags.pidfile, `${Deno.pid}\n`);
    } catch (err) {
      console.error(`cannot write pidfile ${flags.pidfile}: ${(err as Error).message}`);
      stopping = true;
      await instance.stop();
      return 1;
    }
  }
  if (!flags.quiet) console.log(banner(instance));
  return await done.promise;
}

if (import.meta.main) {
  Deno.exit(await run(Deno.args));
}
