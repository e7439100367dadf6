/**
 * The `hostname` option: while the node holds its name, the machine presents
 * itself under it. The system hostname becomes the name's first label
 * (`worker4`) and /etc/hosts gets the node's own line
 *
 *     10.0.0.4	worker4.tf.local	worker4	# idetcd
 *
 * in place of Debian's `127.0.1.1 HOST` line, so that `hostname -f`,
 * Python's `socket.getfqdn()` and `gethostbyname(gethostname())` (what torch
 * and gloo call) give the claimed name and the advertised address. Both are
 * undone the moment the node stops holding the name (released at shutdown,
 * lost, fenced): the previous hostname and the previous 127.0.1.1 line come
 * back.
 *
 * The file itself records what was changed, so that a node killed without a
 * clean stop is undone by its next start:
 *
 *     10.0.0.4	worker4.tf.local	worker4	# idetcd
 *     # idetcd: hostname worker4, previously debian-host
 *     #127.0.1.1	debian-host	# idetcd: replaced
 *
 * Every other line is kept as it is. The file is rewritten atomically (a
 * temporary file in the same folder, then a rename), or in place where
 * /etc/hosts is a mount point of its own (containers bind-mount it, and a
 * rename onto a mount point fails).
 *
 * The hostname is set with `hostname NAME` when that command is on PATH (it
 * acts on the process's own UTS namespace), else with
 * `hostnamectl set-hostname --transient NAME`, else by writing
 * /proc/sys/kernel/hostname. /etc/hostname is never written: a machine that
 * reboots comes back under its own name. A failure (no permission) is one
 * log line; the node keeps serving DNS. When the hostname cannot be set,
 * /etc/hosts is left as it was, so the machine is never half renamed.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { Logger } from "../../log.ts";
import type { ClaimState } from "./claim.ts";

/** The trailing comment of the node's own /etc/hosts lines. */
export const ENTRY_MARK = "# idetcd";
/** The suffix of a line this node commented out (Debian's 127.0.1.1 line). */
export const REPLACED_MARK = "\t# idetcd: replaced";
/** The address Debian's installer maps the hostname to. */
export const DEBIAN_HOST_ADDRESS = "127.0.1.1";

const HOSTNAME_RE = /^# idetcd: hostname (\S+), previously (\S+)$/;

/** A hostname this node set, and the one it replaced. */
export interface HostnameChange {
  /**
   * The hostname this node set (the claimed name's short form); undone only while it is still the
   * hostname.
   */
  set: string;
  /** The hostname it replaced, put back when the name is withdrawn. */
  previous: string;
}

/** An /etc/hosts text with this node's changes taken out. */
export interface CleanHosts {
  /** The text with the node's lines removed and the replaced lines restored. */
  text: string;
  /** The hostname change the file records, if any. */
  hostname?: HostnameChange;
  /** Whether the text had any of this node's changes. */
  changed: boolean;
}

/** The short name and the host-file form of a claimed name: `worker4.tf.local.` -> worker4, worker4.tf.local. */
export function hostNames(name: string): { short: string; fqdn: string } {
  const fqdn = name.replace(/\.$/, "").toLowerCase();
  return { short: fqdn.split(".")[0], fqdn };
}

function isEntry(line: string): boolean {
  return !line.trimStart().startsWith("#") && /\s# idetcd$/.test(line);
}

function firstField(line: string): string | undefined {
  const trimmed = line.trim();
  if (trimmed === "" || trimmed.startsWith("#")) return undefined;
  return trimmed.split(/\s+/)[0];
}

/** Removes this node's lines from an /etc/hosts text and restores the lines it commented out. */
export function cleanHosts(text: string): CleanHosts {
  const lines = text.split("\n");
  const out: string[] = [];
  let hostname: HostnameChange | undefined;
  let changed = false;
  for (const line of lines) {
    if (isEntry(line)) {
      changed = true;
      continue;
    }
    const marker = HOSTNAME_RE.exec(line);
    if (marker) {
      hostname ??= { set: marker[1], previous: marker[2] };
      changed = true;
      continue;
    }
    if (line.startsWith("#") && line.endsWith(REPLACED_MARK)) {
      out.push(line.slice(1, line.length - REPLACED_MARK.length));
      changed = true;
      continue;
    }
    out.push(line);
  }
  return { text: out.join("\n"), hostname, changed };
}

/**
 * The /etc/hosts text that presents this node: `text` without earlier
 * changes of this node, every 127.0.1.1 line commented out, and one line
 * `ADDRESS FQDN SHORT # idetcd` per address (in the order given) where the
 * first 127.0.1.1 line was, else before the first line of one of the
 * addresses (so that a reverse lookup finds the claimed name first), else at
 * the end. `hostname` is recorded for the undo.
 */
export function presentHosts(
  text: string,
  name: string,
  addresses: readonly string[],
  hostname?: HostnameChange,
): string {
  const { short, fqdn } = hostNames(name);
  const lines = cleanHosts(text).text.split("\n");
  // A final newline leaves an empty last element; keep it last.
  const trailing = lines.length > 0 && lines[lines.length - 1] === "";
  if (trailing) lines.pop();
  let at = -1;
  for (let i = 0; i < lines.length; i++) {
    if (firstField(lines[i]) === DEBIAN_HOST_ADDRESS) {
      if (at < 0) at = i;
      lines[i] = `#${lines[i]}${REPLACED_MARK}`;
    }
  }
  if (at < 0) at = lines.findIndex((l) => addresses.includes(firstField(l) ?? ""));
  if (at < 0) at = lines.length;
  const names = fqdn === short ? short : `${fqdn}\t${short}`;
  const ours = addresses.map((a) => `${a}\t${names}\t${ENTRY_MARK}`);
  if (hostname) ours.push(`# idetcd: hostname ${hostname.set}, previously ${hostname.previous}`);
  lines.splice(at, 0, ...ours);
  return lines.join("\n") + "\n";
}

/**
 * The machine's own hostname: the current one, except while a node presents
 * its claimed name (the hosts file records the change and the hostname is
 * still the one set), when it is the hostname that was replaced. The default
 * identity must use this, so that a node's identity does not follow the name
 * it claimed.
 */
export function machineHostname(current: string, hostsText: string): string {
  const recorded = cleanHosts(hostsText).hostname;
  return recorded && recorded.set === current ? recorded.previous : current;
}

/** What {@link HostIdentity} changes: the real machine by default, something else in tests. */
export interface HostSystem {
  /** The hosts file (/etc/hosts). */
  readonly hostsPath: string;
  /** The system hostname now. */
  getHostname(): string;
  /** Sets the system hostname; throws an Error with a one-line message when it cannot. */
  setHostname(name: string): void;
}

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The path of executable `name` on PATH, if any. */
function onPath(name: string): string | undefined {
  let path: string | undefined;
  try {
    path = Deno.env.get("PATH");
  } catch {
    // no --allow-env
  }
  for (const dir of (path ?? DEFAULT_PATH).split(":")) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      const info = Deno.statSync(file);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

function runQuiet(cmd: string, args: string[]): void {
  const out = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n")[0] ||
      `exit status ${out.code}`;
    throw new Error(`${basename(cmd)} ${args.join(" ")}: ${why}`);
  }
}

/** The real machine: /etc/hosts, and the kernel's hostname (see the module doc for how it is set). */
export function systemHost(hostsPath = "/etc/hosts"): HostSystem {
  return {
    hostsPath,
    getHostname() {
      try {
        return Deno.hostname();
      } catch {
        return Deno.readTextFileSync("/proc/sys/kernel/hostname").trim();
      }
    },
    setHostname(name) {
      const hostname = onPath("hostname");
      if (hostname) return runQuiet(hostname, [name]);
      const hostnamectl = onPath("hostnamectl");
      if (hostnamectl) return runQuiet(hostnamectl, ["set-hostname", "--transient", name]);
      try {
        Deno.writeTextFileSync("/proc/sys/kernel/hostname", name);
      } catch (err) {
        throw new Error(`writing /proc/sys/kernel/hostname: ${(err as Error).message}`);
      }
    },
  };
}

function message(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

/**
 * Writes `text` to `path` atomically (a temporary file beside it, then a
 * rename), keeping its mode and owner; in place when `path` is a mount point
 * of its own (a rename onto it fails with EBUSY).
 */
export function writeFileAtomic(path: string, text: string): void {
  let mode = 0o644;
  let owner: { uid: number | null; gid: number | null } | undefined;
  try {
    const info = Deno.statSync(path);
    mode = (info.mode ?? 0o644) & 0o7777;
    owner = { uid: info.uid, gid: info.gid };
  } catch {
    // a new file
  }
  const tmp = join(dirname(path), `.${basename(path)}.idetcd-${Deno.pid}`);
  const data = new TextEncoder().encode(text);
  const write = (file: string, options: Deno.OpenOptions) => {
    const f = Deno.openSync(file, options);
    try {
      let done = 0;
      while (done < data.length) done += f.writeSync(data.subarray(done));
      f.syncSync();
    } finally {
      f.close();
    }
  };
  try {
    write(tmp, { write: true, create: true, truncate: true, mode });
    Deno.chmodSync(tmp, mode);
    if (owner && owner.uid !== null) {
      try {
        Deno.chownSync(tmp, owner.uid, owner.gid);
      } catch {
        // not root: the file is ours anyway
      }
    }
    Deno.renameSync(tmp, path);
    return;
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch {
      // never created, or renamed
    }
    const code = (err as { code?: string }).code;
    if (code !== "EBUSY" && code !== "EXDEV") throw err;
  }
  write(path, { write: true, truncate: true });
}

/**
 * Presents the machine under the node's claimed name while it is held, and
 * undoes it when it is not (see the module doc). Every change is done
 * synchronously, before the state change that caused it is passed on.
 */
export class HostIdentity {
  readonly #log: Logger;
  readonly #system: HostSystem;
  /** The hostname change made by this process, for an undo when the file lost its record. */
  #applied?: HostnameChange;

  /** A presenter on the real machine, or on `system` in tests. */
  constructor(log: Logger, system: HostSystem = systemHost()) {
    this.#log = log;
    this.#system = system;
  }

  /** Presents while `state` is held, undoes otherwise ("starting" included: a killed run's leftovers). */
  update(state: ClaimState): void {
    if (state.kind === "held") this.present(state.claimed.name, state.claimed.addresses);
    else this.withdraw(state.kind === "starting" ? "starting" : state.kind);
  }

  /** Sets the hostname to the first label of `name` and writes the node's /etc/hosts lines. */
  present(name: string, addresses: readonly string[]): void {
    const { hostsPath } = this.#system;
    const { short, fqdn } = hostNames(name);
    let before: string;
    let current: string;
    try {
      before = Deno.readTextFileSync(hostsPath);
      current = this.#system.getHostname();
    } catch (err) {
      this.#log.error(
        `hostname: cannot read ${hostsPath}: ${message(err)}; not presenting ${fqdn}`,
      );
      return;
    }
    const recorded = cleanHosts(before).hostname;
    // The hostname to give back: the one before this node's (or a killed run's) change.
    let previous = current;
    if (recorded && current === recorded.set) previous = recorded.previous;
    else if (this.#applied && current === this.#applied.set) previous = this.#applied.previous;
    const change = { set: short, previous };
    const after = presentHosts(before, name, addresses, change);
    if (after === before && current === short) {
      this.#applied = change; // already presented (the same claim again)
      return;
    }
    try {
      if (after !== before) writeFileAtomic(hostsPath, after);
    } catch (err) {
      this.#log.error(
        `hostname: cannot write ${hostsPath}: ${message(err)}; the hostname stays ${current}`,
      );
      return;
    }
    if (current !== short) {
      try {
        this.#system.setHostname(short);
      } catch (err) {
        // Put the file back first: whoever reads the log line finds it as it was.
        let undone = true;
        try {
          if (after !== before) writeFileAtomic(hostsPath, before);
        } catch (undo) {
          undone = false;
          this.#log.error(`hostname: cannot restore ${hostsPath}: ${message(undo)}`);
        }
        const left = undone ? ` and ${hostsPath} is left as it was` : "";
        this.#log.error(
          `hostname: cannot set the hostname to ${short}: ${
            message(err)
          }; it stays ${current}${left}`,
        );
        return;
      }
    }
    this.#applied = change;
    this.#log.info(
      `hostname ${short} (was ${previous}); ${hostsPath}: ${addresses.join(",")} ${fqdn} ${short}`,
    );
  }

  /** Gives the previous hostname back and removes the node's /etc/hosts lines (restoring 127.0.1.1). */
  withdraw(reason: string): void {
    const { hostsPath } = this.#system;
    let before: string;
    try {
      before = Deno.readTextFileSync(hostsPath);
    } catch (err) {
      if (this.#applied) {
        this.#log.error(`hostname: cannot read ${hostsPath}: ${message(err)}`);
      }
      before = "";
    }
    const clean = cleanHosts(before);
    const change = clean.hostname ?? this.#applied;
    if (!clean.changed && !change) return;
    let restored: string | undefined;
    if (change) {
      try {
        const current = this.#system.getHostname();
        if (current === change.set && change.previous !== current) {
          this.#system.setHostname(change.previous);
          restored = change.previous;
        } else if (current !== change.set) {
          this.#log.warning(
            `hostname: ${current} was set meanwhile (not ${change.set}); leaving it`,
          );
        }
      } catch (err) {
        this.#log.error(
          `hostname: cannot set the hostname back to ${change.previous}: ${message(err)}`,
        );
      }
    }
    if (clean.changed) {
      try {
        writeFileAtomic(hostsPath, clean.text);
      } catch (err) {
        this.#log.error(
          `hostname: cannot restore ${hostsPath}: ${
            message(err)
          }; remove its '${ENTRY_MARK}' lines by hand`,
        );
      }
    }
    this.#applied = undefined;
    this.#log.info(
      `hostname: ${
        restored ? `back to ${restored}` : "unchanged"
      }; ${hostsPath}: the node's line removed (${reason})`,
    );
  }
}
