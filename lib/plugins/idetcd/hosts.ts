/**
 * `idetcd hosts`: the members in ID order as a host list (presets.ts
 * formatHosts: plain, mpi, deepspeed, hosts, file_sd), printed once, or with
 * `--watch FILE` kept up to date in FILE on every membership change from a
 * watch-fed copy of the zone until SIGTERM or SIGINT.
 *
 * FILE is only ever replaced whole (a temporary file in the same folder,
 * then a rename), so a reader (mpirun, Prometheus, a hosts-file loader)
 * never sees half a list; and only when its content changes, so a reader
 * that reloads on mtime does not reload for nothing.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join } from "node:path";
import { createClient } from "../../etcd/client.ts";
import { Mirror } from "../../etcd/mirror.ts";
import type { Logger } from "../../log.ts";
import { memberInfos, zonePath } from "./members.ts";
import { formatHosts, HOST_FORMATS, type HostFormat } from "./presets.ts";
import { ClusterView } from "./records.ts";
import type { IdetcdConfig } from "./setup.ts";
import { readView } from "./status.ts";

/** `idetcd hosts`'s options. */
export interface HostsOptions {
  /** The host list format (`--format`; see {@link formatHosts}). */
  format: HostFormat;
  /** Slots per host (mpi, deepspeed); undefined: 1. */
  slots?: number;
  /** The port of every file_sd target; undefined: each member's published port. */
  port?: number;
  /** Keep this file up to date instead of printing once. */
  watch?: string;
}

/** A usage error: printed with the usage, exit 2. */
export class HostsUsageError extends Error {}

/** The formats that have slots per host. */
const SLOT_FORMATS: readonly HostFormat[] = ["mpi", "deepspeed"];

function integer(text: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new HostsUsageError(
      `invalid value "${text}" for flag --${flag}: an integer from ${min} to ${max}`,
    );
  }
  return Number(text);
}

/**
 * Parses the arguments after `hosts`. Go-style single-dash flags
 * (`-format mpi`) are accepted as main.ts accepts CoreDNS's. A flag a format
 * does not use is an error rather than silently ignored.
 */
export function parseHostsArgs(args: string[]): HostsOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: args.map((a) => (/^-[^-]/.test(a) && a.length > 2 ? "-" + a : a)),
      strict: true,
      allowPositionals: true,
      options: {
        format: { type: "string" },
        slots: { type: "string" },
        port: { type: "string" },
        watch: { type: "string" },
      },
    });
  } catch (err) {
    const flag = /'(-{1,2}[^' ]+)/.exec((err as Error).message)?.[1];
    throw new HostsUsageError(
      flag ? `flag provided but not defined: ${flag.replace(/^-+/, "--")}` : (err as Error).message,
    );
  }
  if (parsed.positionals.length > 0) {
    throw new HostsUsageError(`unexpected arguments: ${parsed.positionals.join(" ")}`);
  }
  const v = parsed.values;
  const format = (v.format ?? "plain") as HostFormat;
  if (!HOST_FORMATS.includes(format)) {
    throw new HostsUsageError(`unknown format "${v.format}"; use ${HOST_FORMATS.join(", ")}`);
  }
  if (v.slots !== undefined && !SLOT_FORMATS.includes(format)) {
    throw new HostsUsageError(`--slots applies to ${SLOT_FORMATS.join(" and ")} only`);
  }
  if (v.port !== undefined && format !== "file_sd") {
    throw new HostsUsageError("--port applies to file_sd only");
  }
  if (v.watch === "") throw new HostsUsageError("--watch needs a file name");
  return {
    format,
    slots: v.slots === undefined ? undefined : integer(v.slots, "slots", 1, 4096),
    port: v.port === undefined ? undefined : integer(v.port, "port", 1, 65535),
    watch: v.watch,
  };
}

/** The host list of a view of the zone. */
export function hostsText(view: ClusterView, config: IdetcdConfig, options: HostsOptions): string {
  return formatHosts(memberInfos(view, config.roles), options.format, {
    slots: options.slots,
    port: options.port,
  });
}

/** Reads the zone once and returns the host list; throws one line naming the endpoints. */
export async function readHosts(config: IdetcdConfig, options: HostsOptions): Promise<string> {
  return hostsText(await readView(config), config, options);
}

/** The file's content, or undefined when it cannot be read (absent). */
function currentContent(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Replaces `path` with `text` atomically (temporary file in the same folder,
 * then rename: rename is atomic only within one file system). Returns false,
 * writing nothing, when the file already holds exactly `text`.
 */
export function writeIfChanged(path: string, text: string): boolean {
  if (currentContent(path) === text) return false;
  const dir = dirname(path);
  Deno.mkdirSync(dir, { recursive: true });
  const temporary = join(dir, `.${basename(path)}.tmp-${Deno.pid}`);
  try {
    Deno.writeTextFileSync(temporary, text);
    Deno.renameSync(temporary, path);
  } catch (err) {
    try {
      Deno.removeSync(temporary);
    } catch {
      // never created
    }
    throw err;
  }
  return true;
}

/** What the watch needs from its caller. */
export interface WatchContext {
  /** The logger of the watch's zone copy (its etcd connection trouble). */
  log: Logger;
  /** Prints a progress or error line (stderr). */
  say(line: string): void;
  /** Resolves when the watch should end (SIGTERM, SIGINT). */
  stop: Promise<unknown>;
}

/**
 * Keeps `options.watch` up to date until `ctx.stop` resolves (exit 0), or a
 * write fails (exit 1). etcd outages do not end it: the copy keeps retrying,
 * and the file keeps the last membership seen meanwhile.
 */
export async function watchHosts(
  config: IdetcdConfig,
  options: HostsOptions & { watch: string },
  ctx: WatchContext,
): Promise<number> {
  const path = options.watch;
  const client = createClient(config.etcd, config.configDir);
  const base = zonePath(config);
  // Lease TTLs are of no use here; tracking them would ask etcd about every member's lease.
  const mirror = new Mirror(client, base + "/", ctx.log, { trackLeases: false });
  const failed = Promise.withResolvers<number>();
  let first = true;
  const update = () => {
    if (!mirror.isReady()) return;
    const view = ClusterView.fromSource(mirror, base, config.pattern);
    try {
      if (writeIfChanged(path, hostsText(view, config, options))) {
        ctx.say(`idetcd hosts: wrote ${path}: ${view.members.length} members`);
      } else if (first) {
        ctx.say(`idetcd hosts: ${path} is up to date: ${view.members.length} members`);
      }
      first = false;
    } catch (err) {
      ctx.say(`idetcd hosts: cannot write ${path}: ${(err as Error).message}`);
      failed.resolve(1);
    }
  };
  const unsubscribe = mirror.onChange(update);
  try {
    // start() resolves after the first full load (or on close) and never rejects: it retries.
    void mirror.start().then(update);
    return await Promise.race([ctx.stop.then(() => 0), failed.promise]);
  } finally {
    unsubscribe();
    await mirror.close();
    client.close();
  }
}
