/**
 * The plugin contract: how a Corefile directive becomes a handler in a chain.
 *
 * A plugin folder (`lib/plugins/<name>/`) exports one {@link PluginDefinition}.
 * The server calls its `setup` once per server block that names the
 * directive, with every occurrence of the directive in that block (as
 * CoreDNS/Caddy do), and chains the returned {@link Plugin}s in the fixed
 * global order of `lib/server/registry.ts`.
 *
 * @module
 */

import type { Directive } from "../corefile/types.ts";
import type { OPTData, Question, RR } from "../dns/types.ts";
import type { Logger } from "../log.ts";

/** A query as the chain sees it. */
export interface Request {
  /** Message ID. */
  readonly id: number;
  readonly opcode: number;
  /** Recursion desired. */
  readonly rd: boolean;
  /** Checking disabled. */
  readonly cd: boolean;
  /** Authentic data (request side). */
  readonly ad: boolean;
  /** The question; `question.name` keeps the case the client sent. */
  readonly question: Question;
  /** Lower-cased, fully qualified qname: what lookups use. */
  readonly qname: string;
  /** The client's OPT record, or null without EDNS0. */
  readonly edns: OPTData | null;
  readonly transport: "udp" | "tcp";
  /** Client address, IPv4-mapped addresses unwrapped ("127.0.0.1", "::1"). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Local address and port the query arrived on. */
  readonly localAddress: string;
  readonly localPort: number;
  /** Size of the query in bytes. */
  readonly size: number;
  /** The server block zone that routed the query ("." when the catch-all block did). */
  readonly zone: string;
  /** Number of internal re-entries that led here (0 for a client query). */
  readonly depth: number;
  /**
   * Resolves `name`/`type` through this server's routing and chains again, as
   * CoreDNS's upstream does for CNAME targets outside a plugin's zone.
   */
  lookup(name: string, type: number): Promise<Reply>;
}

/** What a handler produced. The server turns it into a DNS message. */
export interface Reply {
  rcode: number;
  /** AA bit. */
  authoritative: boolean;
  /** TC bit set by the producer (upstream truncation); size truncation is the server's. */
  truncated?: boolean;
  /** RA bit. */
  recursionAvailable?: boolean;
  /** AD bit. */
  authenticData?: boolean;
  answer: RR[];
  authority: RR[];
  additional: RR[];
  /**
   * True when no plugin wrote an answer (CoreDNS's `ClientWrite` false): the
   * server sends a bare reply with `rcode` and no records.
   */
  bare?: boolean;
  /** The plugin that produced it (metrics label). */
  plugin?: string;
  /** An error for the `errors` plugin to log; the reply is still sent. */
  error?: string;
  /**
   * Set by producers whose answer depends only on the question and on data
   * with this generation: the server may keep the encoded reply until the
   * generation changes (see lib/server/answer_cache.ts).
   */
  cacheGeneration?: () => number;
}

/** A chain continuation. */
export type Handler = (req: Request) => Promise<Reply>;

/** One link of a server block's chain. */
export interface Plugin {
  /** The directive name. */
  readonly name: string;
  /** Answers, or passes to `next`. */
  serve(req: Request, next: Handler): Promise<Reply>;
  /** For the `ready` plugin: false until the plugin can answer correctly. */
  ready?(): boolean;
}

/** Server-wide settings a directive may set instead of (or besides) adding a handler. */
export interface ServerOptions {
  /** Addresses from `bind`; empty means every address. */
  bind: string[];
}

/** Reference-counted objects shared by plugins across blocks and across reloads. */
export interface ResourcePool {
  /**
   * Returns the live object for `key`, creating it with `create` on first use.
   * Each call takes a reference, dropped when the configuration that took it stops.
   */
  acquire<T extends { close(): Promise<void> | void }>(key: string, create: () => T): T;
}

/** What a plugin's setup gets. */
export interface SetupContext {
  /** Every occurrence of the directive in this server block, in file order. */
  readonly directives: Directive[];
  /** The server block's zones (lower-cased, fully qualified; from its keys). */
  readonly zones: string[];
  /** The server block's listen port. */
  readonly port: number;
  /** Folder of the Corefile, for relative paths. */
  readonly configDir: string;
  /** Server-wide settings of this block. */
  readonly serverOptions: ServerOptions;
  /** Shared resources (etcd clients, mirrors, the idetcd claim). */
  readonly resources: ResourcePool;
  readonly log: Logger;
  /** Runs after every block is set up, before listeners open; may wait (the idetcd claim). */
  onStartup(fn: () => Promise<void> | void): void;
  /** Runs when this configuration stops (shutdown or reload). */
  onShutdown(fn: () => Promise<void> | void): void;
  /**
   * Reports an error the server cannot run on, found after startup by work
   * a plugin does in the background (the idetcd claim giving up): the
   * program logs it and exits 1.
   */
  fatal(error: Error): void;
}

/** A plugin as the registry lists it. */
export interface PluginDefinition {
  readonly name: string;
  /**
   * Reads the directive's tokens (throwing CorefileError with CoreDNS's texts
   * on bad input) and returns the chain link, or null for directives that
   * register no handler (bind, health, ready, reload).
   */
  setup(ctx: SetupContext): Plugin | null | Promise<Plugin | null>;
}

/**
 * A reply with no records that the server sends as a bare `rcode` (CoreDNS's
 * "plugin returned an error without writing"): SERVFAIL after a failure,
 * REFUSED for a name nothing serves.
 */
export function bareReply(rcode: number, plugin?: string, error?: string): Reply {
  const reply: Reply = {
    rcode,
    authoritative: false,
    answer: [],
    authority: [],
    additional: [],
    bare: true,
  };
  if (plugin !== undefined) reply.plugin = plugin;
  if (error !== undefined) reply.error = error;
  return reply;
}
