/**
 * The plugin contract: how a Corefile directive becomes a handler in a chain.
 *
 * A plugin folder (`lib/plugins/<name>/`) exports one {@link PluginDefinition}.
 * The server calls its `setup` once per server block that names the
 * directive, with every occurrence of the directive in that block (as
 * CoreDNS/Caddy do), and chains the returned {@link Plugin}s in the order
 * of the plugin list it was given: the composition root's (`plugins.ts`,
 * used by main.ts), as CoreDNS's plugin.cfg. lib/server never imports a
 * plugin; what a plugin needs from the server comes through its
 * {@link SetupContext}, the hooks it registers there, and {@link Request}.
 *
 * @module
 */

import type { Directive, ServerBlock } from "../corefile/types.ts";
import type { OPTData, Question, RR } from "../dns/types.ts";
import type { Message } from "../dns/wire.ts";
import type { Logger } from "../log.ts";

/** What a written reply looked like, for log and metrics observers ({@link Request.observe}). */
export interface Written {
  /** The reply's rcode (SERVFAIL when the reply could not be encoded). */
  rcode: number;
  /** Bytes sent. */
  size: number;
  /** TC bit as sent (set by size truncation too). */
  truncated: boolean;
  /** AA bit. */
  authoritative: boolean;
  /** RA bit. */
  recursionAvailable: boolean;
  /** AD bit. */
  authenticData: boolean;
  /** RD bit (copied from the query). */
  recursionDesired: boolean;
  /** CD bit (copied from the query). */
  checkingDisabled: boolean;
  /** The matched zone ("." for the catch-all, "" when unrouted). */
  zone: string;
  /** The plugin that produced the reply. */
  plugin?: string;
  /** The question as sent back. */
  question?: Question;
  /** The message as sent (after truncation decisions; records as produced). */
  message: Message;
}

/** A query as the chain sees it. */
export interface Request {
  /** Message ID. */
  readonly id: number;
  /** The query's opcode (0 for QUERY). */
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
  /** The transport the query arrived on. */
  readonly transport: "udp" | "tcp";
  /** Client address, IPv4-mapped addresses unwrapped ("127.0.0.1", "::1"). */
  readonly remoteAddress: string;
  /** Client port. */
  readonly remotePort: number;
  /** Local address the query arrived on. */
  readonly localAddress: string;
  /** Local port the query arrived on. */
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
  /**
   * Calls `fn` once this query's reply has been encoded, with what was sent
   * (sizes are the bytes on the wire, after truncation), as CoreDNS's log
   * and metrics plugins see it through their response recorders. When `fn`
   * returns a {@link FastObserver}, the reply may be kept for the fast path
   * and that function hears of every later query answered from the kept
   * copy; when it returns nothing, the reply is never kept, so every query
   * reaches `fn`. Internal re-entries ({@link lookup}) send no reply of
   * their own: their observers are never called.
   */
  observe(fn: (written: Written) => FastObserver | void): void;
}

/**
 * What a plugin does per query, declared once on its {@link PluginDefinition}
 * so that the server decides, when it builds a chain, which replies the
 * fast path may keep and send again without running the chain:
 *
 * - `"pure-answer"`: answers by itself or passes the query on, and does
 *   nothing else per query; a reply it marks reusable
 *   ({@link Reply.cacheGeneration}, {@link Reply.reuse}) depends only on the
 *   question and on the data the mark watches (etcd, idetcd, whoami, cache).
 * - `"passes-through"`: only hands the query on; whatever else it does per
 *   query the fast path would not change (errors logs only replies with an
 *   error, which are never kept; bufsize works before the chain).
 * - `"observes-reply"`: watches replies through {@link Request.observe} and
 *   returns a {@link FastObserver} there, which hears of every fast-path
 *   answer (prometheus).
 * - `"needs-full-path"`: must run for every query it would see (log,
 *   loadbalance's rotation, forward). A reply produced while such a plugin
 *   ran is never kept; a chain whose first plugin needs the full path has
 *   no fast path at all.
 *
 * Undeclared plugins count as `"needs-full-path"`: forgetting the
 * declaration costs speed, never behaviour.
 */
export type PerQuery = "pure-answer" | "passes-through" | "observes-reply" | "needs-full-path";

/** One query answered by the fast path from a kept reply, as its {@link FastObserver} hears of it. */
export interface FastHit {
  /** The transport the query arrived on. */
  readonly transport: "udp" | "tcp";
  /** Client address, IPv4-mapped addresses unwrapped. */
  readonly remoteAddress: string;
  /** Local address the query arrived on. */
  readonly localAddress: string;
  /** Local port the query arrived on. */
  readonly localPort: number;
  /** Size of the query in bytes. */
  readonly requestSize: number;
  /** Bytes sent. */
  readonly responseSize: number;
  /** Time the fast path took, in seconds. */
  readonly seconds: number;
}

/** Hears of each fast-path answer sent from the kept reply it was returned for (see {@link Request.observe}). */
export type FastObserver = (hit: FastHit) => void;

/**
 * How a kept reply stays right ({@link Reply.reuse}): asked on every reuse,
 * it gives the TTL every record (OPT aside) is rewritten to, or undefined
 * when the query must go through the chain (the data moved, the entry
 * expired, a refresh is due).
 */
export interface Reuse {
  /** The TTL to send now, or undefined to take the full path. */
  ttl(): number | undefined;
}

/** What a handler produced. The server turns it into a DNS message. */
export interface Reply {
  /** The reply's rcode. */
  rcode: number;
  /** AA bit. */
  authoritative: boolean;
  /** TC bit set by the producer (upstream truncation); size truncation is the server's. */
  truncated?: boolean;
  /** RA bit. */
  recursionAvailable?: boolean;
  /** AD bit. */
  authenticData?: boolean;
  /** The answer section. */
  answer: RR[];
  /** The authority section. */
  authority: RR[];
  /** The additional section (the server adds the OPT record). */
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
  /**
   * Set by producers whose reply stays right as long as {@link Reuse.ttl}
   * says so, with every TTL counted down (the cache plugin's hits): the
   * server may keep the encoded reply and rewrite its TTLs in place.
   */
  reuse?: Reuse;
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
  /**
   * From `bufsize`: the largest EDNS0 UDP size a query of this block keeps
   * (the server lowers larger offers before the chain runs); unset means
   * {@link DEFAULT_UDP_SIZE}.
   */
  udpSize?: number;
}

/** The DNS Flag Day 2020 size: the UDP cap of a block without `bufsize` (CoreDNS's `bufsize` default). */
export const DEFAULT_UDP_SIZE = 1232;

/** Reference-counted objects shared by plugins across blocks and across reloads. */
export interface ResourcePool {
  /**
   * Returns the live object for `key`, creating it with `create` on first use.
   * Each call takes a reference, dropped when the configuration that took it stops.
   */
  acquire<T extends { close(): Promise<void> | void }>(key: string, create: () => T): T;
}

/** A server block of a configuration, as its startup hooks see it. */
export interface BlockView {
  /** The block's zones (lower-cased, fully qualified; one per key on this port). */
  readonly zones: readonly string[];
  /** The listen port. */
  readonly port: number;
  /** Addresses from `bind`; empty means every address. */
  readonly bind: readonly string[];
  /** The chain's plugins, outermost first (shared by the blocks one block became, one per port). */
  readonly plugins: readonly Plugin[];
}

/** A listen address of a configuration. */
export interface ListenerView {
  /** "" for every address, else an IP. */
  readonly host: string;
  /** The port as configured (0 asks the system for one). */
  readonly port: number;
}

/**
 * One whole configuration, as startup hooks receive it: what plugins that
 * look across server blocks need (ready asks every chain plugin; prometheus
 * reports coredns_plugin_enabled; reload hashes the Corefile that runs).
 */
export interface ConfigView {
  /** Every server block after setup. */
  readonly blocks: readonly BlockView[];
  /** Every listen address. */
  readonly listeners: readonly ListenerView[];
  /** The parsed server blocks (imports expanded) this configuration was built from. */
  readonly corefile: readonly ServerBlock[];
}

/** What shutdown hooks are told about the stop. */
export interface ShutdownEvent {
  /**
   * True when the server stops for good (CoreDNS's OnFinalShutdown: health
   * waits out its lameduck, ready answers "Shutting down"); false when the
   * configuration gives way to a reloaded one or failed to start while
   * another keeps serving (OnRestart).
   */
  readonly final: boolean;
}

/** Runs after every block is set up, before listeners open; may wait (the idetcd claim). */
export type StartupHook = (config: ConfigView) => Promise<void> | void;

/** Runs when a configuration stops. */
export type ShutdownHook = (event: ShutdownEvent) => Promise<void> | void;

/** What a plugin may ask of the server that runs it. */
export interface ServerControl {
  /**
   * Reads and parses the Corefile again, as the server loaded it (imports
   * expanded; a Corefile from stdin is the text read at start). Throws with
   * the reason when it cannot be read or parsed, or when the server was
   * given no way to read it (a test, an in-process server).
   */
  readCorefile(): Promise<ServerBlock[]>;
  /**
   * Reads the Corefile again and swaps configurations gracefully (see
   * Instance.reload). Resolves true when the new configuration runs, false
   * when the old one was kept (the server logs why).
   */
  reload(why: string): Promise<boolean>;
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
  /** This plugin's logger ("plugin/NAME: ..."). */
  readonly log: Logger;
  /** The server running this configuration: reading the Corefile again, reloading. */
  readonly server: ServerControl;
  /**
   * Runs after every block is set up, before listeners open; may wait (the
   * idetcd claim). It receives the whole configuration being started.
   */
  onStartup(fn: StartupHook): void;
  /**
   * Runs when this configuration stops: the server stopping (final), a
   * reload replacing it, or its own start failing. Hooks run in plugin
   * order across blocks, so ready says "Shutting down" before health's
   * lameduck waits.
   */
  onShutdown(fn: ShutdownHook): void;
  /**
   * Reports an error the server cannot run on, found after startup by work
   * a plugin does in the background (the idetcd claim giving up): the
   * program logs it and exits 1.
   */
  fatal(error: Error): void;
}

/** A plugin as the composition root lists it. */
export interface PluginDefinition {
  /** The directive name. */
  readonly name: string;
  /**
   * Reads the directive's tokens (throwing CorefileError with CoreDNS's texts
   * on bad input) and returns the chain link, or null for directives that
   * register no handler (bind, health, ready, reload).
   */
  setup(ctx: SetupContext): Plugin | null | Promise<Plugin | null>;
  /** What the chain link does per query (see {@link PerQuery}); undeclared means `"needs-full-path"`. */
  readonly perQuery?: PerQuery;
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
