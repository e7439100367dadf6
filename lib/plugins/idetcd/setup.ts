/**
 * The `idetcd` directive: Corefile tokens -> {@link IdetcdConfig}.
 *
 * Compatible with the original plugin's syntax (`endpoint`, `limit`,
 * `pattern`) plus the options documented in README.md.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { type Dispenser, onlyOnce } from "../../corefile/dispenser.ts";
import type { Directive, Token } from "../../corefile/types.ts";
import { parseDuration } from "../../go/time.ts";
import { fqdn, lowerName } from "../../dns/name.ts";
import { DEFAULT_ENDPOINT, type EtcdOptions } from "../../etcd/options.ts";
import { parseEtcdConnectionOption } from "../etcd/options.ts";
import { type NamePattern, parsePattern, PatternError } from "./pattern.ts";
import { isRoleName, parseIdRange, type Role, RoleMap } from "./roles.ts";

/** The plugin name, as errors and logs show it. */
export const PLUGIN = "idetcd";

/** Defaults of the options. */
export const DEFAULTS = {
  limit: 10,
  /** DNS TTL of answers, seconds. */
  ttl: 30,
  /** etcd lease length, seconds (the original's hard-coded 20 s). */
  leaseSeconds: 20,
  prefix: "/skydns",
  /** Port TF_CONFIG uses when none is configured. */
  tfPort: 2222,
} as const;

/** The shortest lease etcd grants with default settings (etcd-io/etcd#6025). */
export const MIN_LEASE_SECONDS = 2;
/** The largest limit accepted (a range read lists every slot). */
export const MAX_LIMIT = 100_000;

/** Everything the `idetcd` directive configures. */
export interface IdetcdConfig {
  /** How to reach etcd. */
  etcd: EtcdOptions;
  /** Highest ID; names are claimed in 1..limit. */
  limit: number;
  /** The name template an ID is rendered into (and parsed back from), with its zone. */
  pattern: NamePattern;
  /** `address` arguments (IPs and interface names); empty = detect. */
  addressSpecs: string[];
  /** DNS TTL of answers, seconds. */
  ttl: number;
  /** etcd lease length, seconds. */
  leaseSeconds: number;
  /** How long before the lease's local deadline the node stops vouching, ms; undefined = the default. */
  fenceMarginMs?: number;
  /** TTL of negative answers, seconds; undefined = min(ttl, 5). */
  negativeTtl?: number;
  /** etcd key prefix, normalized ("/skydns"). */
  prefix: string;
  /** Service port advertised in SRV answers and TF_CONFIG. */
  port?: number;
  /** Wait for a free slot instead of failing: `{}` waits forever. */
  wait?: { timeoutSeconds?: number };
  /** Absolute path of the JSON file written on claim. */
  file?: string;
  /** Sticky node identity; undefined = derived from the machine and addresses. */
  identity?: string;
  /** Zones for which NXDOMAIN passes to the next plugin; empty = none. */
  fallthrough: string[];
  /** Named ranges of IDs (`role NAME IDS...`); empty when none is declared. */
  roles: RoleMap;
  /** The role this node claims in (`claim-role NAME`); undefined = IDETCD_ROLE or any. */
  claimRole?: string;
  /** `hostname`: while the name is held, the system hostname and /etc/hosts present it (host_identity.ts). */
  hostname: boolean;
  /** Folder of the Corefile (TLS paths are relative to it). */
  configDir: string;
  /** Where the directive is, for messages. */
  where: { file: string; line: number };
}

function exactlyOne(line: Dispenser): Token {
  if (line.args.length !== 1) {
    throw line.args.length === 0 ? line.argErr() : line.err(
      `${line.name.text} takes one argument, got ${line.args.length}`,
      line.args[1],
    );
  }
  return line.args[0];
}

function parseInteger(
  line: Dispenser,
  token: Token,
  what: string,
  min: number,
  max: number,
): number {
  if (!/^\d+$/.test(token.text) || Number(token.text) < min || Number(token.text) > max) {
    throw line.err(`${what} must be an integer from ${min} to ${max}, got '${token.text}'`, token);
  }
  return Number(token.text);
}

function parseSeconds(line: Dispenser, token: Token, what: string): number {
  let seconds: number;
  try {
    // Bare integers are seconds ("30"); anything else is a Go duration ("1m30s").
    seconds = /^\d+$/.test(token.text) ? Number(token.text) : parseDuration(token.text);
  } catch (err) {
    throw line.err(`invalid ${what} value '${token.text}': ${(err as Error).message}`, token);
  }
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw line.err(`invalid ${what} value '${token.text}'`, token);
  }
  return seconds;
}

/** Normalizes an etcd key prefix as Go's path.Join("/" + p) does: "skydns/" -> "/skydns". */
export function normalizePrefix(prefix: string): string {
  const parts = prefix.split("/").filter((p) => p !== "" && p !== ".");
  return "/" + parts.join("/");
}

/** Reads the `idetcd` directive(s) of a server block; throws CorefileError ("plugin/idetcd: ..."). */
export function parseIdetcd(directives: readonly Directive[], configDir: string): IdetcdConfig {
  if (directives.length === 0) throw new Error("parseIdetcd: no directive");
  const d = onlyOnce(PLUGIN, directives);
  const head = d.line;
  // Errors about the directive as a whole are raised at the token they name.
  const fail = (message: string, where: Token) => d.err(message, where);
  if (head.args.length > 0) {
    throw fail(
      `idetcd takes no arguments (its zone comes from pattern), got '${head.args[0].text}'`,
      head.args[0],
    );
  }
  const etcd: EtcdOptions = { endpoints: [DEFAULT_ENDPOINT] };
  let limit: number = DEFAULTS.limit;
  let limitToken: Token | undefined;
  let pattern: NamePattern | undefined;
  let patternToken: Token | undefined;
  const addressSpecs: string[] = [];
  let ttl: number = DEFAULTS.ttl;
  let leaseSeconds: number = DEFAULTS.leaseSeconds;
  let fenceMarginMs: number | undefined;
  let marginToken: Token | undefined;
  let negativeTtl: number | undefined;
  let prefix: string = DEFAULTS.prefix;
  let port: number | undefined;
  let wait: IdetcdConfig["wait"];
  let file: string | undefined;
  let identity: string | undefined;
  let fallthrough: string[] = [];
  const roles: Role[] = [];
  const roleTokens = new Map<string, Token>();
  let claimRole: string | undefined;
  let claimRoleToken: Token | undefined;
  let hostname = false;

  for (const line of d.blockLines()) {
    const name = line.name.text;
    switch (name) {
      case "endpoint":
      case "credentials":
      case "tls":
        if (!parseEtcdConnectionOption(line, etcd)) throw line.unknownProperty();
        break;
      case "limit":
        limitToken = exactlyOne(line);
        limit = parseInteger(line, limitToken, "limit", 1, MAX_LIMIT);
        break;
      case "pattern": {
        patternToken = exactlyOne(line);
        try {
          pattern = parsePattern(patternToken.text);
        } catch (err) {
          if (err instanceof PatternError) throw line.err(err.message, patternToken);
          throw err;
        }
        break;
      }
      case "address":
        if (line.args.length === 0) throw line.argErr();
        for (const a of line.args) addressSpecs.push(a.text);
        break;
      case "ttl": {
        const t = exactlyOne(line);
        ttl = Math.floor(parseSeconds(line, t, "ttl"));
        if (ttl > 2_147_483_647) throw line.err(`ttl ${t.text} is too large`, t);
        break;
      }
      case "lease": {
        const t = exactlyOne(line);
        const seconds = Math.ceil(parseSeconds(line, t, "lease"));
        if (seconds < MIN_LEASE_SECONDS) {
          throw line.err(`lease must be at least ${MIN_LEASE_SECONDS}s, got '${t.text}'`, t);
        }
        if (seconds > 9_000_000_000) throw line.err(`lease ${t.text} is too large`, t);
        leaseSeconds = seconds;
        break;
      }
      case "fence-margin": {
        marginToken = exactlyOne(line);
        fenceMarginMs = Math.round(parseSeconds(line, marginToken, "fence-margin") * 1000);
        break;
      }
      case "negative-ttl": {
        const t = exactlyOne(line);
        negativeTtl = Math.floor(parseSeconds(line, t, "negative-ttl"));
        if (negativeTtl > 86_400) throw line.err(`negative-ttl ${t.text} is too large`, t);
        break;
      }
      case "prefix": {
        const t = exactlyOne(line);
        prefix = normalizePrefix(t.text);
        if (prefix === "/") throw line.err(`prefix must name a path, got '${t.text}'`, t);
        break;
      }
      case "port":
        port = parseInteger(line, exactlyOne(line), "port", 1, 65535);
        break;
      case "wait":
        if (line.args.length > 1) {
          throw line.err(`wait takes at most one argument (a timeout)`, line.args[1]);
        }
        wait = line.args.length === 0
          ? {}
          : { timeoutSeconds: parseSeconds(line, line.args[0], "wait timeout") || undefined };
        break;
      case "file": {
        const t = exactlyOne(line);
        file = isAbsolute(t.text) ? t.text : join(configDir, t.text);
        break;
      }
      case "identity": {
        const t = exactlyOne(line);
        if (t.text.trim() === "") throw line.err("identity must not be empty", t);
        identity = t.text;
        break;
      }
      case "role": {
        if (line.args.length < 2) {
          throw line.err(
            "role takes a name and IDs, e.g. 'role ps 2-3'",
            line.args[0] ?? line.name,
          );
        }
        const name = line.args[0].text;
        if (!isRoleName(name)) {
          throw line.err(
            `role name must be lower-case letters, digits and '-', got '${name}'`,
            line.args[0],
          );
        }
        if (roleTokens.has(name)) throw line.err(`role ${name} is declared twice`, line.args[0]);
        const ids: number[] = [];
        for (const t of line.args.slice(1)) {
          const range = parseIdRange(t.text);
          if (!range) throw line.err(`role ${name}: '${t.text}' is not an ID or a range N-M`, t);
          ids.push(...range);
        }
        roleTokens.set(name, line.args[0]);
        roles.push({ name, ids: [...new Set(ids)].sort((a, b) => a - b) });
        break;
      }
      case "claim-role":
        if (line.args.length > 1) throw line.err("claim-role takes one role name", line.args[1]);
        // `claim-role {$ROLE}` with ROLE unset leaves no argument: any role.
        claimRole = line.args[0]?.text || undefined;
        claimRoleToken = line.args[0] ?? line.name;
        break;
      case "hostname":
        if (line.args.length > 0) {
          throw line.err(`hostname takes no arguments, got '${line.args[0].text}'`, line.args[0]);
        }
        hostname = true;
        break;
      case "fallthrough":
        fallthrough = line.args.length === 0
          ? ["."]
          : line.args.map((a) => lowerName(fqdn(a.text.replace(/^dns:\/\//, ""))));
        break;
      default:
        throw line.unknownProperty();
    }
  }

  if (!pattern) {
    throw fail("pattern is required, e.g. 'pattern worker{{.ID}}.tf.local.'", head.name);
  }
  if (fenceMarginMs !== undefined) {
    // Keep-alives need room between the margin and the lease's end (three tries fit).
    if (fenceMarginMs < 1 || fenceMarginMs > leaseSeconds * 1000 / 2) {
      throw fail(
        `fence-margin must be more than 0 and at most half the lease (${leaseSeconds / 2}s), got '${
          marginToken!.text
        }'`,
        marginToken!,
      );
    }
  }
  if (roles.length > 0) {
    const owner = new Map<number, string>();
    for (const role of roles) {
      for (const id of role.ids) {
        if (id > limit) {
          throw fail(
            `role ${role.name}: ID ${id} is above limit ${limit}`,
            roleTokens.get(role.name)!,
          );
        }
        const other = owner.get(id);
        if (other) {
          throw fail(
            `roles ${other} and ${role.name} both hold ID ${id}`,
            roleTokens.get(role.name)!,
          );
        }
        owner.set(id, role.name);
      }
    }
    const missing: number[] = [];
    for (let id = 1; id <= limit; id++) if (!owner.has(id)) missing.push(id);
    if (missing.length > 0) {
      throw fail(
        `with roles, every ID 1..${limit} needs one; no role holds ${
          missing.slice(0, 5).join(", ")
        }${missing.length > 5 ? ", ..." : ""}`,
        head.name,
      );
    }
  }
  if (claimRole !== undefined && !roles.some((r) => r.name === claimRole)) {
    throw fail(
      `claim-role ${claimRole}: no such role${
        roles.length ? ` (roles: ${roles.map((r) => r.name).join(", ")})` : ""
      }`,
      claimRoleToken!,
    );
  }
  try {
    pattern.validateLimit(limit);
  } catch (err) {
    if (err instanceof PatternError) throw fail(err.message, limitToken ?? patternToken!);
    throw err;
  }
  return {
    etcd,
    limit,
    pattern,
    addressSpecs,
    ttl,
    leaseSeconds,
    fenceMarginMs,
    negativeTtl,
    prefix,
    port,
    wait,
    file,
    identity,
    fallthrough,
    roles: new RoleMap(roles),
    claimRole,
    hostname,
    configDir,
    where: { file: head.name.file, line: head.name.line },
  };
}
