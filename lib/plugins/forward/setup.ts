/**
 * The `forward` directive: Corefile tokens -> {@link ForwardConfig}, with
 * CoreDNS's defaults and error texts (plugin/forward/setup.go,
 * plugin/pkg/parse/host.go).
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { Dispenser } from "../../corefile/dispenser.ts";
import { CorefileError, type Directive, type Token } from "../../corefile/types.ts";
import { normalizeZones } from "../../corefile/keys.ts";
import { parseDuration } from "../../go/time.ts";
import { fqdn, isDomainName, lowerName } from "../../dns/name.ts";
import { expandIPv6, isIP, parseIP, to4 } from "../../go/ip.ts";
import { joinHostPort, splitHostPort } from "../../go/net.ts";
import { atoi, parseUint } from "../../go/strconv.ts";
import type { Logger } from "../../log.ts";

/** The plugin name, as errors and logs show it. */
export const PLUGIN = "forward";

/** CoreDNS's limit on upstreams per stanza. */
export const MAX_UPSTREAMS = 15;

/** How upstreams are ordered for each query. */
export type Policy = "random" | "round_robin" | "sequential";

/** One upstream: an IP (no brackets, no zone) and a port. */
export interface UpstreamAddress {
  /** The IP, without brackets or zone. */
  host: string;
  /** The port (53 unless given). */
  port: number;
}

/** Everything one `forward` stanza configures. */
export interface ForwardConfig {
  /** The zone forwarded (lower-cased, fully qualified). */
  from: string;
  /** Zones under `from` that are not forwarded. */
  except: string[];
  /** The TO addresses, in order. */
  upstreams: UpstreamAddress[];
  /** `force_tcp`: always ask over TCP. */
  forceTcp: boolean;
  /** `prefer_udp`: ask over UDP even when the client asked over TCP. */
  preferUdp: boolean;
  /** Idle upstream sockets are replaced after this long, seconds (default 10). */
  expireSeconds: number;
  /** Health-check failures tolerated before an upstream counts as down; 0 disables checks. */
  maxFails: number;
  /** Interval between health checks of an unhealthy upstream, seconds (default 0.5). */
  healthCheckSeconds: number;
  /** RD bit of health-check queries (`no_rec` clears it). */
  healthCheckRecursion: boolean;
  /** Name the health check asks NS for (default "."). */
  healthCheckDomain: string;
  /** The order upstreams are tried in. */
  policy: Policy;
  /** Concurrent queries allowed; 0 is unlimited. */
  maxConcurrent: number;
  /** Upstream rcodes that hand the query to the next forward stanza. */
  next: number[];
  /** Upstream rcodes that make forward try the next upstream. */
  failover: number[];
  /** With every upstream down, answer SERVFAIL instead of trying a random one. */
  failfast: boolean;
}

/** miekg/dns's StringToRcode, for `next` and `failover`. */
const RCODES: Record<string, number> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
  BADSIG: 16,
  BADVERS: 16,
  BADKEY: 17,
  BADTIME: 18,
  BADMODE: 19,
  BADNAME: 20,
  BADALG: 21,
  BADTRUNC: 22,
  BADCOOKIE: 23,
};

/** A config with CoreDNS's defaults (forward.New()). */
export function defaultConfig(): ForwardConfig {
  return {
    from: ".",
    except: [],
    upstreams: [],
    forceTcp: false,
    preferUdp: false,
    expireSeconds: 10,
    maxFails: 2,
    healthCheckSeconds: 0.5,
    healthCheckRecursion: true,
    healthCheckDomain: ".",
    policy: "random",
    maxConcurrent: 0,
    next: [],
    failover: [],
    failfast: false,
  };
}

function fail(message: string, at: Token): CorefileError {
  return new CorefileError(message, at, PLUGIN);
}

function number(tok: Token, fn: "Atoi" | "ParseUint"): number {
  try {
    // max_fails is a uint32 in CoreDNS; max_concurrent an int.
    return fn === "Atoi" ? atoi(tok.text) : parseUint(tok.text, 32);
  } catch (err) {
    throw fail((err as Error).message, tok);
  }
}

function duration(tok: Token): number {
  try {
    return parseDuration(tok.text);
  } catch (err) {
    throw fail((err as Error).message, tok);
  }
}

/** The IP of `text` without its zone, as written, or undefined when it is not an IP. */
function hostIP(text: string): string | undefined {
  const host = text.includes("%") ? text.slice(0, text.lastIndexOf("%")) : text;
  return isIP(host) ? host : undefined;
}

/** Go's net.SplitHostPort as [host, port], or undefined when `text` is not host:port. */
function hostAndPort(text: string): [string, string] | undefined {
  try {
    const { host, port } = splitHostPort(text);
    return [host, port];
  } catch {
    return undefined;
  }
}

/** The `nameserver` lines of a resolv.conf-style file, as miekg's ClientConfigFromFile reads them. */
export function readResolvConf(text: string): string[] {
  const servers: string[] = [];
  for (const raw of text.split("\n")) {
    const fields = raw.trim().split(/\s+/);
    if (fields.length < 2 || fields[0] !== "nameserver") continue;
    const ip = hostIP(fields[1]);
    if (ip) servers.push(ip);
  }
  return servers;
}

/** One upstream with the TO argument it came from (and the resolv.conf file, when it came from one). */
interface ParsedUpstream {
  address: UpstreamAddress;
  token: Token;
  file?: string;
}

function upstreamsOf(tokens: Token[], configDir: string): ParsedUpstream[] {
  const out: ParsedUpstream[] = [];
  for (const tok of tokens) {
    const scheme = /^([a-z0-9]+):\/\//.exec(tok.text)?.[1];
    const rest = scheme ? tok.text.slice(scheme.length + 3) : tok.text;
    if (scheme === "tls" || scheme === "https") {
      throw fail(
        `${scheme}:// is not supported by idetcd; forward to plain DNS (dns:// or no scheme): ${tok.text}`,
        tok,
      );
    }
    if (scheme && scheme !== "dns") {
      throw fail(
        `'${scheme}' is not supported as a destination protocol in forward: ${tok.text}`,
        tok,
      );
    }
    const hostPort = hostAndPort(rest);
    if (!hostPort) {
      const ip = hostIP(rest);
      if (ip) {
        out.push({ address: { host: ip, port: 53 }, token: tok });
        continue;
      }
    } else {
      const ip = hostIP(hostPort[0]);
      if (ip) {
        if (!/^\d+$/.test(hostPort[1]) || Number(hostPort[1]) > 65535) {
          throw fail(`invalid port '${hostPort[1]}' in ${tok.text}`, tok);
        }
        out.push({ address: { host: ip, port: Number(hostPort[1]) }, token: tok });
        continue;
      }
    }
    // Neither an IP nor IP:port: CoreDNS tries it as a resolv.conf file.
    const path = isAbsolute(rest) ? rest : join(configDir, rest);
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch {
      throw fail(`not an IP address or file: "${rest}"`, tok);
    }
    for (const host of readResolvConf(text)) {
      out.push({ address: { host, port: 53 }, token: tok, file: path });
    }
  }
  if (out.length === 0) throw fail("no nameservers found", tokens[tokens.length - 1]);
  return out;
}

/**
 * Resolves TO arguments: `IP`, `IP:port`, `[v6]:port`, `dns://...`, or a
 * resolv.conf path (relative to `configDir`). Rejects the transports
 * idetcd does not speak. Mirrors parse.HostPortOrFile + parse.Transport.
 */
export function parseUpstreams(tokens: Token[], configDir: string): UpstreamAddress[] {
  return upstreamsOf(tokens, configDir).map((u) => u.address);
}

/** Where the server block of a stanza listens: its port, and its `bind` addresses (empty: every address). */
export interface ListenAddresses {
  /** The block's DNS port. */
  port: number;
  /** Its `bind` addresses; empty for every address. */
  bind: readonly string[];
}

/**
 * An IP in one spelling for comparisons: IPv4 dotted (also for IPv4-mapped
 * IPv6), IPv6 as eight lower-case hex groups; no zone.
 */
export function canonicalIP(ip: string): string {
  const host = ip.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const bytes = parseIP(host);
  if (!bytes) return host.toLowerCase();
  const v4 = to4(bytes);
  if (v4) return v4.join(".");
  return expandIPv6(host)!.map((g) => g.toString(16)).join(":");
}

const V6_ANY = canonicalIP("::");
const V6_LOOPBACK = canonicalIP("::1");

/** Whether `ip` (canonical) reaches this machine whatever its interfaces: loopback or "any". */
function alwaysLocal(ip: string): boolean {
  return ip.startsWith("127.") || ip === "0.0.0.0" || ip === V6_ANY || ip === V6_LOOPBACK;
}

/** The addresses of this machine's interfaces, canonical (empty without --allow-sys). */
export function interfaceAddresses(): string[] {
  try {
    return Deno.networkInterfaces().map((i) => canonicalIP(i.address));
  } catch {
    return [];
  }
}

/**
 * Whether a query sent to `upstream` comes back to a server listening as
 * `listen` on a machine with the interface addresses `local`: the same port,
 * and an address it listens on. A server without `bind` listens on every
 * address ("::" and "0.0.0.0"), so any local address is one; so is any
 * local IPv4 address for `bind 0.0.0.0`. 0.0.0.0 and :: as destinations
 * reach the machine itself.
 */
export function loopsBack(
  upstream: UpstreamAddress,
  listen: ListenAddresses,
  local: readonly string[] = interfaceAddresses(),
): boolean {
  if (upstream.port !== listen.port) return false;
  let to = canonicalIP(upstream.host);
  if (to === "0.0.0.0") to = "127.0.0.1";
  if (to === V6_ANY) to = V6_LOOPBACK;
  const isLocal = alwaysLocal(to) || local.includes(to);
  const v4 = !to.includes(":");
  if (listen.bind.length === 0) return isLocal;
  return listen.bind.some((b) => {
    const at = canonicalIP(b);
    if (at === V6_ANY) return isLocal; // dual-stack on Linux
    if (at === "0.0.0.0") return isLocal && v4;
    return at === to;
  });
}

function hostPort(u: UpstreamAddress): string {
  return joinHostPort(u.host, u.port);
}

/** The one-line refusal of a stanza whose upstream is this server itself. */
function loopError(d: Directive, u: ParsedUpstream, listen: ListenAddresses): CorefileError {
  const where = listen.bind.length === 0
    ? `port ${listen.port} of every local address`
    : listen.bind.map((b) => hostPort({ host: b, port: listen.port })).join(", ");
  const target = u.file
    ? `its nameserver ${u.address.host} (port 53) is this server`
    : `${hostPort(u.address)} is this server`;
  return fail(
    `forward ${
      d.args[0].text
    } ${u.token.text} would loop: ${target}, which listens on ${where}; forward to another resolver`,
    u.token,
  );
}

function rcodes(line: Dispenser, what: "next" | "failover"): number[] {
  const args = line.remainingArgs();
  if (args.length === 0) throw line.argErr();
  return args.map((tok) => {
    const rc = RCODES[tok.text.toUpperCase()];
    if (rc === undefined) throw fail(`${tok.text} is not a valid rcode`, tok);
    if (what === "failover" && rc === 0) throw fail("NoError cannot be used in failover", tok);
    return rc;
  });
}

// An option without arguments: idetcd names the option (CoreDNS the first extra token).
function noArgs(line: Dispenser): void {
  if (line.line.args.length) throw line.argErr();
}

// An option's first argument (later ones, where the option has none, are ignored as in CoreDNS).
function oneArg(line: Dispenser): Token {
  if (!line.nextArg()) throw line.argErr();
  return line.token();
}

function parseOption(cfg: ForwardConfig, line: Dispenser): void {
  const name = line.val();
  switch (name) {
    case "except": {
      const zones = line.remainingArgs();
      if (zones.length === 0) throw line.argErr();
      cfg.except.push(...normalizeZones(zones.map((a) => a.text)));
      return;
    }
    case "max_fails":
      cfg.maxFails = number(oneArg(line), "ParseUint");
      return;
    case "health_check": {
      const tok = oneArg(line);
      const seconds = duration(tok);
      if (seconds < 0) {
        throw fail(`health_check can't be negative: ${Math.round(seconds * 1e9)}`, tok);
      }
      cfg.healthCheckSeconds = seconds;
      cfg.healthCheckDomain = ".";
      while (line.nextArg()) {
        const opt = line.token();
        if (opt.text === "no_rec") cfg.healthCheckRecursion = false;
        else if (opt.text === "domain") {
          if (!line.nextArg()) throw line.argErr();
          const domain = line.token();
          if (!isDomainName(domain.text)) {
            throw fail(`health_check: invalid domain name ${domain.text}`, domain);
          }
          cfg.healthCheckDomain = lowerName(fqdn(domain.text));
        } else throw fail(`health_check: unknown option ${opt.text}`, opt);
      }
      return;
    }
    case "force_tcp":
      noArgs(line);
      cfg.forceTcp = true;
      return;
    case "prefer_udp":
      noArgs(line);
      cfg.preferUdp = true;
      return;
    case "tls":
    case "tls_servername":
      throw fail(
        `${name} is not supported by idetcd; forward to plain DNS upstreams`,
        line.name,
      );
    case "expire": {
      const tok = oneArg(line);
      const seconds = duration(tok);
      if (seconds < 0) throw fail(`expire can't be negative: ${tok.text}`, tok);
      cfg.expireSeconds = seconds;
      return;
    }
    case "policy": {
      const tok = oneArg(line);
      if (tok.text !== "random" && tok.text !== "round_robin" && tok.text !== "sequential") {
        throw fail(`unknown policy '${tok.text}'`, tok);
      }
      cfg.policy = tok.text;
      return;
    }
    case "max_concurrent": {
      const tok = oneArg(line);
      const n = number(tok, "Atoi");
      if (n < 0) throw fail(`max_concurrent can't be negative: ${n}`, tok);
      cfg.maxConcurrent = n;
      return;
    }
    case "next":
      cfg.next.push(...rcodes(line, "next"));
      return;
    case "failover":
      cfg.failover.push(...rcodes(line, "failover"));
      return;
    case "failfast_all_unhealthy_upstreams":
      noArgs(line);
      cfg.failfast = true;
      return;
    default:
      throw line.unknownProperty();
  }
}

/**
 * Parses one `forward FROM TO... { ... }` stanza. Throws CorefileError. With
 * `listen` (where its server block listens), an upstream that is this server
 * itself is refused: every query would go round until it timed out.
 */
export function parseStanza(
  d: Directive,
  configDir: string,
  log?: Logger,
  listen?: ListenAddresses,
): ForwardConfig {
  const cfg = defaultConfig();
  const line = new Dispenser(PLUGIN, d);
  if (!line.nextArg()) throw line.argErr();
  const fromTok = line.token();
  const zones = normalizeZones([fromTok.text]);
  if (zones.length === 0) throw fail(`unable to normalize '${fromTok.text}'`, fromTok);
  cfg.from = zones[0];
  if (zones.length > 1) {
    log?.warning(
      `Unsupported CIDR notation: '${fromTok.text}' expands to multiple zones. Using only '${cfg.from}'.`,
    );
  }
  const to = line.remainingArgs();
  if (to.length === 0) throw line.argErr();
  const upstreams = upstreamsOf(to, configDir);
  if (listen) {
    const local = interfaceAddresses();
    const loop = upstreams.find((u) => loopsBack(u.address, listen, local));
    if (loop) throw loopError(d, loop, listen);
  }
  cfg.upstreams = upstreams.map((u) => u.address);
  for (const option of line.blockLines()) parseOption(cfg, option);
  if (cfg.upstreams.length > MAX_UPSTREAMS) {
    throw fail(`more than ${MAX_UPSTREAMS} TOs configured: ${cfg.upstreams.length}`, d.name);
  }
  return cfg;
}
