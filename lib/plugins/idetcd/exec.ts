/**
 * `idetcd exec`: start the job under the name. It finds this node's claim
 * (a server already holding it, or it becomes the server itself), waits for
 * the cluster (the barrier), hands the command the cluster's environment
 * (IDETCD_* and the framework presets), and supervises it: signals reach it,
 * its exit code is exec's, and when the node stops vouching for its name the
 * command gets SIGTERM, then SIGKILL after the grace period, all before etcd
 * can give the name to another node.
 *
 * Exit codes: the command's own (128 + N when a signal N ended it); 2 for a
 * usage error; 1 when no name could be had; {@link EXIT_BARRIER_TIMEOUT}
 * when the barrier timed out; {@link EXIT_NAME_LOST} when the node lost its
 * name and the command was stopped.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseDuration } from "../../go/time.ts";
import { createClient } from "../../etcd/client.ts";
import { Etcd3Kv } from "../../etcd/kv.ts";
import type { Watcher } from "etcd3";
import type { Logger } from "../../log.ts";
import { listInterfaces } from "./addresses.ts";
import { claimKey } from "./claim_key.ts";
import { defaultMarginMs } from "./lease.ts";
import { zonePath } from "./members.ts";
import {
  type Cluster,
  hostName,
  type MemberInfo,
  presetEnv,
  type PresetName,
  PRESETS,
} from "./presets.ts";
import { decodeLock, parseSlotKey } from "./records.ts";
import { liveHolder, readRuntimeState, runtimePath, type RuntimeState } from "./runtime.ts";
import type { IdetcdConfig } from "./setup.ts";

/** Exit code when the barrier timed out (as GNU timeout's). */
export const EXIT_BARRIER_TIMEOUT = 124;
/** Exit code when the node lost its name and the command was stopped. */
export const EXIT_NAME_LOST = 125;

/** `idetcd exec`'s options. */
export interface ExecOptions {
  /** Wait for every ID 1..limit. */
  waitAll: boolean;
  /** Wait for at least this many members. */
  waitMin?: number;
  /** Give up waiting (for the claim and the barrier) after this long, ms; undefined: forever. */
  waitTimeoutMs?: number;
  /**
   * The `--preset` frameworks whose environment (and host files) CMD gets, each once, in the order
   * given.
   */
  presets: PresetName[];
  /** SIGTERM to SIGKILL, ms; undefined: the fencing margin less {@link SUPERVISION_SLACK_MS}. */
  graceMs?: number;
  /**
   * MASTER_PORT / the JAX coordinator's port; undefined: the presets' default, 29500 (torch's own).
   */
  coordinatorPort?: number;
  /** The role whose first member coordinates. */
  coordinatorRole?: string;
  /** Slots per host in host files. */
  slots?: number;
  /** The role to claim in when exec is the server. */
  role?: string;
  /** Where host files go; default a folder in the runtime folder. */
  hostfileDir?: string;
  /** The systemd unit that may be starting a server for this claim. */
  service: string;
  /** The command and its arguments. */
  command: string[];
}

/** A usage error: printed with the usage, exit 2. */
export class ExecUsageError extends Error {}

/** Seconds from a Go duration or a bare number. */
function durationMs(text: string, flag: string): number {
  try {
    const seconds = /^\d+(\.\d+)?$/.test(text) ? Number(text) : parseDuration(text);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  } catch {
    // below
  }
  throw new ExecUsageError(
    `invalid value "${text}" for flag --${flag}: a duration such as 30s or 5m`,
  );
}

function integer(text: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new ExecUsageError(
      `invalid value "${text}" for flag --${flag}: an integer from ${min} to ${max}`,
    );
  }
  return Number(text);
}

/** Parses exec's arguments (everything after `exec`). */
export function parseExecArgs(args: string[]): ExecOptions {
  const dash = args.indexOf("--");
  const own = dash < 0 ? args : args.slice(0, dash);
  const command = dash < 0 ? [] : args.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own.map((a) => (/^-[^-]/.test(a) && a.length > 2 ? "-" + a : a)),
      strict: true,
      allowPositionals: true,
      options: {
        "wait-all": { type: "boolean" },
        "wait-min": { type: "string" },
        "wait-timeout": { type: "string" },
        preset: { type: "string", multiple: true },
        grace: { type: "string" },
        "coordinator-port": { type: "string" },
        "coordinator-role": { type: "string" },
        slots: { type: "string" },
        role: { type: "string" },
        "hostfile-dir": { type: "string" },
        service: { type: "string" },
      },
    });
  } catch (err) {
    const flag = /'(-{1,2}[^' ]+)/.exec((err as Error).message)?.[1];
    throw new ExecUsageError(
      flag ? `flag provided but not defined: ${flag.replace(/^-+/, "--")}` : (err as Error).message,
    );
  }
  const v = parsed.values;
  const positional = parsed.positionals;
  if (positional.length > 0 && command.length === 0) command.push(...positional);
  else if (positional.length > 0) {
    throw new ExecUsageError(`unexpected arguments before --: ${positional.join(" ")}`);
  }
  if (command.length === 0) {
    throw new ExecUsageError("exec needs a command: idetcd exec [options] -- CMD [ARGS...]");
  }
  const presets: PresetName[] = [];
  for (const p of v.preset ?? []) {
    for (const name of p.split(",")) {
      if (!(PRESETS as readonly string[]).includes(name)) {
        throw new ExecUsageError(`unknown preset "${name}"; use ${PRESETS.join(", ")}`);
      }
      if (!presets.includes(name as PresetName)) presets.push(name as PresetName);
    }
  }
  if (v["wait-all"] && v["wait-min"] !== undefined) {
    throw new ExecUsageError("--wait-all and --wait-min exclude each other");
  }
  return {
    waitAll: v["wait-all"] ?? false,
    waitMin: v["wait-min"] === undefined
      ? undefined
      : integer(v["wait-min"], "wait-min", 1, 100_000),
    waitTimeoutMs: v["wait-timeout"] === undefined
      ? undefined
      : durationMs(v["wait-timeout"], "wait-timeout"),
    presets,
    graceMs: v.grace === undefined ? undefined : durationMs(v.grace, "grace"),
    coordinatorPort: v["coordinator-port"] === undefined
      ? undefined
      : integer(v["coordinator-port"], "coordinator-port", 1, 65535),
    coordinatorRole: v["coordinator-role"],
    slots: v.slots === undefined ? undefined : integer(v.slots, "slots", 1, 4096),
    role: v.role,
    hostfileDir: v["hostfile-dir"],
    service: v.service ?? "idetcd",
    command,
  };
}

/** Headroom between the fence and etcd's lease end that supervision itself needs, ms. */
export const SUPERVISION_SLACK_MS = 500;
/** How often the runtime state file is read while the command runs, ms. */
const POLL_MS = 100;

/** A server exec started for itself. */
export interface EmbeddedServer {
  /**
   * Stops the server (its claim is released); exec calls it on every way out, after CMD has ended.
   */
  stop(): Promise<void>;
}

/** What exec needs from main.ts. */
export interface ExecContext {
  /**
   * The Corefile's idetcd block: whose claim exec runs under, and its limit, roles and fence
   * margin.
   */
  config: IdetcdConfig;
  /** Where exec's DEBUG lines go. */
  log: Logger;
  /** Starts this Corefile's server in-process (exec as the server). */
  serve(): Promise<EmbeddedServer>;
  /** Prints a progress or error line (stderr). */
  say(line: string): void;
}

/** True when systemd reports `unit` active or starting (a server is on its way). */
async function serviceStarting(unit: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("systemctl", {
      args: ["is-active", unit],
      stdout: "piped",
      stderr: "null",
    }).output();
    const state = new TextDecoder().decode(out.stdout).trim();
    return state === "active" || state === "activating" || state === "reloading";
  } catch {
    return false; // no systemd
  }
}

/** Sleeps `ms`. */
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The interface that carries `address`, for GLOO/NCCL_SOCKET_IFNAME. */
function interfaceOf(addresses: readonly string[]): string | undefined {
  try {
    for (const iface of listInterfaces()) {
      if (iface.addresses.some((a) => addresses.includes(a))) return iface.name;
    }
  } catch {
    // no --allow-sys
  }
  return undefined;
}

/** Runs `idetcd exec`; resolves with the exit code. */
export async function runExec(options: ExecOptions, ctx: ExecContext): Promise<number> {
  const { config } = ctx;
  const marginMs = config.fenceMarginMs ?? defaultMarginMs(config.leaseSeconds);
  const graceMs = options.graceMs ?? Math.max(0, marginMs - SUPERVISION_SLACK_MS - POLL_MS);
  if (graceMs + SUPERVISION_SLACK_MS + POLL_MS > marginMs) {
    ctx.say(
      `idetcd exec: --grace ${graceMs / 1000}s does not fit in the fence margin (${
        marginMs / 1000
      }s): the command must be stopped before etcd can give the name away; lower --grace or raise fence-margin`,
    );
    return 2;
  }
  if (options.role && !config.roles.get(options.role)) {
    ctx.say(`idetcd exec: --role ${options.role}: no such role in the Corefile`);
    return 2;
  }
  if (options.coordinatorRole && !config.roles.get(options.coordinatorRole)) {
    ctx.say(
      `idetcd exec: --coordinator-role ${options.coordinatorRole}: no such role in the Corefile`,
    );
    return 2;
  }
  const deadline = options.waitTimeoutMs === undefined
    ? Infinity
    : performance.now() + options.waitTimeoutMs;
  const statePath = runtimePath(claimKey(config));

  // Which process holds this node's claim: a server, or exec itself.
  let embedded: EmbeddedServer | undefined;
  if (!liveHolder(statePath) && !(await serviceStarting(options.service))) {
    if (options.role) Deno.env.set("IDETCD_ROLE", options.role);
    try {
      embedded = await ctx.serve();
    } catch (err) {
      ctx.say((err as Error).message);
      return 1;
    }
  } else if (!liveHolder(statePath)) {
    ctx.say(`idetcd exec: ${options.service} is starting; waiting for its claim`);
  }
  const stopEmbedded = async () => {
    const server = embedded;
    embedded = undefined;
    await server?.stop();
  };
  try {
    const held = await waitForHeld(statePath, deadline, ctx);
    if (typeof held === "string") {
      ctx.say(`idetcd exec: this node holds no name of ${config.pattern.source} (${held})`);
      return held === "timed out waiting" ? EXIT_BARRIER_TIMEOUT : 1;
    }
    const cluster = await barrier(options, ctx, held, deadline);
    if (typeof cluster === "string") {
      ctx.say(cluster);
      return EXIT_BARRIER_TIMEOUT;
    }
    const me = cluster.members.find((m) => m.id === cluster.selfId)!;
    const hostfileDir = options.hostfileDir ??
      `${statePath.replace(/\.json$/, "")}-exec-${Deno.pid}`;
    const { env, files } = presetEnv(cluster, options.presets, {
      coordinatorPort: options.coordinatorPort,
      tfPort: config.port,
      slots: options.slots,
      interfaceName: interfaceOf(me.addresses),
      hostfileDir,
    });
    if (files.size > 0) Deno.mkdirSync(hostfileDir, { recursive: true });
    for (const [path, text] of files) Deno.writeTextFileSync(path, text);
    return await supervise(options, env, statePath, held, graceMs, ctx);
  } finally {
    await stopEmbedded();
  }
}

/** Waits until the runtime state file says the name is held; undefined on timeout. */
async function waitForHeld(
  path: string,
  deadline: number,
  ctx: ExecContext,
): Promise<RuntimeState & { id: number; name: string } | string> {
  let told = 0;
  while (performance.now() < deadline) {
    const state = liveHolder(path);
    if (state?.held && state.id !== undefined && state.name !== undefined) {
      return state as RuntimeState & { id: number; name: string };
    }
    // The claim gave up for good (all names taken without `wait`, etcd away for 15 s).
    if (state?.state === "stopped") {
      return `the claim stopped: ${state.reason ?? "no reason given"}`;
    }
    if (performance.now() - told > 5_000) {
      if (told > 0) {
        ctx.say(`idetcd exec: waiting for this node's claim (${state?.state ?? "no server yet"})`);
      }
      told = performance.now();
    }
    await sleep(POLL_MS);
  }
  return "timed out waiting";
}

/**
 * The barrier: waits until every ID (or at least `waitMin` members) is
 * claimed, printing progress every few seconds; resolves with the
 * membership of that moment, or the timeout's message.
 *
 * It replays etcd's history from this node's own claim on (a listing at that
 * revision, then a watch from the next one, judged event by event): the
 * moment all were present lies after this node's claim, so a node whose
 * peers already finished and left still sees it, and every node freezes the
 * same membership.
 */
async function barrier(
  options: ExecOptions,
  ctx: ExecContext,
  held: RuntimeState & { id: number; name: string },
  deadline: number,
): Promise<Cluster | string> {
  const { config } = ctx;
  const want = options.waitAll ? config.limit : options.waitMin ?? 1;
  const client = createClient(config.etcd, config.configDir);
  const base = zonePath(config);
  const locks = new Map<number, MemberInfo>();
  const apply = (key: string, value: string | undefined) => {
    const slot = parseSlotKey(base, config.pattern, key);
    if (slot?.kind !== "lock") return;
    const info = value === undefined ? undefined : decodeLock(value);
    if (!info) {
      locks.delete(slot.id);
      return;
    }
    locks.set(slot.id, {
      id: slot.id,
      name: config.pattern.render(slot.id),
      role: config.roles.roleOf(slot.id),
      addresses: info.addresses,
      port: info.port,
    });
  };
  const frozen = (): Cluster => ({
    members: [...locks.values()].sort((a, b) => a.id - b.id),
    selfId: held.id,
    fence: held.fence ?? 0,
    roles: config.roles,
    coordinatorRole: options.coordinatorRole,
  });
  const reached = () => locks.size >= want && locks.has(held.id);
  const missingText = () => {
    const missing: string[] = [];
    for (let id = 1; id <= config.limit && missing.length < 10; id++) {
      if (!locks.has(id)) missing.push(hostName(config.pattern.render(id)));
    }
    return `${locks.size}/${want} claimed; waiting for ${missing.join(", ")}${
      config.limit - locks.size > 10 ? ", ..." : ""
    }`;
  };
  const kv = new Etcd3Kv(client);
  let watcher: Watcher | undefined;
  try {
    let from = held.fence ?? 0;
    let listing;
    try {
      listing = await kv.rangeAt(base + "/", from);
    } catch {
      // The claim's revision was compacted away: start from now.
      listing = await kv.rangeAt(base + "/", 0);
      from = listing.revision;
    }
    for (const entry of listing.kvs) apply(entry.key, entry.value);
    if (reached()) return frozen();
    const done = Promise.withResolvers<Cluster>();
    watcher = await client.watch().prefix(base + "/").startRevision(String(from + 1)).create();
    watcher.on("put", (e) => {
      apply(e.key.toString(), e.value.toString());
      if (reached()) done.resolve(frozen());
    });
    watcher.on("delete", (e) => {
      apply(e.key.toString(), undefined);
    });
    watcher.on("error", (err) => ctx.log.debug(`barrier watch: ${(err as Error).message}`));
    while (true) {
      const left = deadline - performance.now();
      if (left <= 0) return `idetcd exec: the barrier timed out: ${missingText()}`;
      const result = await Promise.race([
        done.promise,
        sleep(Math.min(left, 3_000)).then(() => undefined),
      ]);
      if (result) return result;
      if (deadline - performance.now() > 0) ctx.say(`idetcd exec: ${missingText()}`);
    }
  } finally {
    await watcher?.cancel().catch(() => {});
    client.close();
  }
}

/** Signals exec passes on to the command. */
const FORWARDED: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];

/** Exit code of a finished command, as a shell reports it. */
function exitCode(status: Deno.CommandStatus): number {
  if (status.signal) {
    const numbers: Record<string, number> = {
      SIGHUP: 1,
      SIGINT: 2,
      SIGQUIT: 3,
      SIGKILL: 9,
      SIGUSR1: 10,
      SIGUSR2: 12,
      SIGTERM: 15,
    };
    return 128 + (numbers[status.signal] ?? 0);
  }
  return status.code;
}

/** Runs the command and stops it when the node stops holding its name. */
async function supervise(
  options: ExecOptions,
  env: Record<string, string>,
  statePath: string,
  held: RuntimeState & { id: number; name: string },
  graceMs: number,
  ctx: ExecContext,
): Promise<number> {
  const [cmd, ...args] = options.command;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      env,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    })
      .spawn();
  } catch (err) {
    ctx.say(`idetcd exec: cannot run ${cmd}: ${(err as Error).message}`);
    return 127;
  }
  // The listeners stay until exit: with none a late SIGTERM (a process group's signal
  // that deno task or a shell passes on) would kill exec with 143 while it releases the
  // name it held for the command. child.kill on a finished child throws.
  for (const signal of FORWARDED) {
    Deno.addSignalListener(signal, () => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    });
  }
  let lost: string | undefined;
  let done = false;
  const watcher = (async () => {
    while (!done) {
      await sleep(POLL_MS);
      if (done) return;
      const state = readRuntimeState(statePath);
      const stillHeld = state !== undefined && state.held && state.id === held.id &&
        state.fence === held.fence;
      if (stillHeld) continue;
      lost = state === undefined
        ? "the server holding it stopped"
        : state.held
        ? `it now holds ID ${state.id}`
        : `${state.state}: ${state.reason ?? "no reason given"}`;
      ctx.say(
        `idetcd exec: this node stopped holding ${
          hostName(held.name)
        } (${lost}); stopping the command (SIGTERM, SIGKILL after ${graceMs / 1000}s)`,
      );
      try {
        child.kill("SIGTERM");
      } catch {
        return;
      }
      const killAt = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // exited in time
        }
      }, graceMs);
      await child.status;
      clearTimeout(killAt);
      return;
    }
  })();
  const status = await child.status;
  done = true;
  await watcher;
  return lost !== undefined ? EXIT_NAME_LOST : exitCode(status);
}
