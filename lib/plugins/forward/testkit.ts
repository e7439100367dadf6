/**
 * Test helpers shared by the forward, cache and loadbalance tests: a
 * scripted upstream DNS server on real sockets, a chain served through the
 * real Dispatcher and Listener, and a UDP/TCP client (tests/helpers/dns.ts's,
 * with these tests' defaults).
 *
 * @module
 */

import { decodeMessage, encodeMessage, encodeQuery, type Message } from "../../dns/wire.ts";
import { Class, type RR, type SOAData, Type } from "../../dns/types.ts";
import { createLogger, type Logger } from "../../log.ts";
import { Dispatcher } from "../../server/dispatch.ts";
import { Listener } from "../../server/listen.ts";
import { type BlockRuntime, noNextPlugin } from "../../server/config.ts";
import type {
  Handler,
  Plugin,
  Reply,
  Request,
  SetupContext,
  ShutdownHook,
} from "../../server/plugin.ts";
import { lowerName } from "../../dns/name.ts";
import type { Directive } from "../../corefile/types.ts";
import { parseCorefile } from "../../corefile/parser.ts";
import {
  frame,
  message,
  readFrame,
  tcpQuery,
  udpQuery,
  writeAll,
} from "../../../tests/helpers/dns.ts";

/** A logger that drops everything. */
export const quietLog: Logger = createLogger("test", () => {});

/** What a scripted server returns for a query: a message, raw bytes, or null to stay silent. */
export type Responder = (
  query: Message,
  transport: "udp" | "tcp",
) => Message | Uint8Array | null | Promise<Message | Uint8Array | null>;

/** A scripted DNS server listening on 127.0.0.1 (UDP and TCP, same port). */
export interface FakeServer {
  /** The port it listens on (UDP and TCP). */
  port: number;
  /** Every query received, in order, with the sender's source port. */
  received: { transport: "udp" | "tcp"; query: Message; remotePort: number }[];
  /** Stops listening. */
  close(): Promise<void>;
}

/** A reply to `query` (ID, opcode, RD and question copied), with overrides. */
export function replyTo(query: Message, fields: Partial<Message> = {}): Message {
  return message({
    id: query.id,
    response: true,
    opcode: query.opcode,
    recursionDesired: query.recursionDesired,
    recursionAvailable: true,
    checkingDisabled: query.checkingDisabled,
    question: query.question,
    ...fields,
  });
}

/** An A record. */
export function a(name: string, address: string, ttl = 300): RR {
  return { name, type: 1, class: Class.INET, ttl, data: address };
}

/** The SOA of example.org. that the tests' negative answers carry. */
export function soa(ttl = 30): RR {
  return {
    name: "example.org.",
    type: Type.SOA,
    class: Class.INET,
    ttl,
    data: {
      mname: "ns.example.org.",
      rname: "hostmaster.example.org.",
      serial: 1,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: 30,
    } satisfies SOAData,
  };
}

/** A UDP and a TCP socket on one free port of 127.0.0.1 (retrying when TCP's is taken). */
function bindPair(): [Deno.DatagramConn, Deno.Listener] {
  for (let attempt = 0;; attempt++) {
    const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const port = (udp.addr as Deno.NetAddr).port;
      return [udp, Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port })];
    } catch (err) {
      udp.close();
      if (!(err instanceof Deno.errors.AddrInUse) || attempt >= 50) throw err;
    }
  }
}

/** Starts a scripted DNS server on a free port of 127.0.0.1. */
export function startFakeServer(respond: Responder): FakeServer {
  const [udp, tcp] = bindPair();
  const bound = (udp.addr as Deno.NetAddr).port;
  const received: FakeServer["received"] = [];
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let closed = false;
  const answer = async (packet: Uint8Array, transport: "udp" | "tcp", from: Deno.Addr) => {
    let query: Message;
    try {
      query = decodeMessage(packet);
    } catch {
      return null;
    }
    received.push({ transport, query, remotePort: (from as Deno.NetAddr).port });
    const out = await respond(query, transport);
    if (out === null) return null;
    return out instanceof Uint8Array ? out : encodeMessage(out);
  };
  const track = (p: Promise<void>) => {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  };
  const udpLoop = (async () => {
    while (!closed) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await udp.receive();
      } catch {
        if (closed) return;
        continue;
      }
      track(
        answer(data, "udp", addr).then(async (bytes) => {
          if (bytes && !closed) await udp.send(bytes, addr).catch(() => {});
        }),
      );
    }
  })();
  const tcpLoop = (async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await tcp.accept();
      } catch {
        return;
      }
      conns.add(conn);
      track((async () => {
        try {
          while (!closed) {
            const query = await readFrame(conn);
            if (!query) break;
            const bytes = await answer(query, "tcp", conn.remoteAddr);
            if (!bytes) continue;
            await writeAll(conn, frame(bytes));
          }
        } catch {
          // connection cut
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      })());
    }
  })();
  return {
    port: bound,
    received,
    async close() {
      closed = true;
      udp.close();
      tcp.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await Promise.allSettled([udpLoop, tcpLoop, ...tasks]);
    },
  };
}

/** A chain served on 127.0.0.1 through the real Dispatcher and Listener. */
export interface ChainServer {
  /** The port it listens on (UDP and TCP). */
  port: number;
  /** Stops serving. */
  close(): Promise<void>;
}

/** Serves `plugins` (outermost first) for every zone on a free port of 127.0.0.1. */
export function serveChain(plugins: Plugin[], log: Logger = quietLog): ChainServer {
  let chain: Handler = () => Promise.resolve(noNextPlugin(plugins[plugins.length - 1].name));
  for (let i = plugins.length - 1; i >= 0; i--) {
    const plugin = plugins[i];
    const after = chain;
    chain = (req) => plugin.serve(req, after);
  }
  // Asserted rather than annotated: the runtime shape may grow fields tests do not need.
  const block = {
    zones: ["."],
    keys: [],
    port: 0,
    bind: ["127.0.0.1"],
    chain,
    plugins,
    anyClass: plugins.some((p) => p.name === "forward"),
  } as BlockRuntime;
  const dispatcher = new Dispatcher(
    { host: "127.0.0.1", port: 0, zones: new Map([[".", block]]) },
    log,
  );
  // Port 0 binds UDP first, then TCP on the same port, which may be taken: try again.
  for (let attempt = 0;; attempt++) {
    const listener = new Listener("127.0.0.1", 0, dispatcher, log);
    try {
      listener.open();
      return { port: listener.boundPort, close: () => listener.close() };
    } catch (err) {
      if (!/already in use/.test((err as Error).message) || attempt >= 50) throw err;
    }
  }
}

/** Options of {@link ask}. */
export interface AskOptions {
  /** Ask over TCP instead of UDP. */
  tcp?: boolean;
  /** EDNS0 buffer size; 0 or absent sends no OPT record unless `dnssecOk`. */
  udpSize?: number;
  /** Set the DO bit (adds an OPT record). */
  dnssecOk?: boolean;
  /** Set the CD bit. */
  checkingDisabled?: boolean;
  /** Set the RD bit (default true). */
  recursionDesired?: boolean;
  /** The class to ask for (default IN). */
  cls?: number;
  /** Milliseconds to wait for the reply. */
  timeoutMs?: number;
}

/** Sends one query to 127.0.0.1:`port` and returns the decoded reply (throws on timeout). */
export async function ask(
  port: number,
  name: string,
  type: number,
  options: AskOptions = {},
): Promise<Message> {
  const id = Math.floor(Math.random() * 65536);
  const udpSize = options.udpSize ?? (options.dnssecOk ? 1232 : 0);
  const packet = encodeQuery(id, name, type, {
    rd: options.recursionDesired ?? true,
    udpSize: udpSize || undefined,
    dnssecOk: options.dnssecOk,
    cls: options.cls,
  });
  if (options.checkingDisabled) packet[3] |= 0x10;
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (options.tcp) {
    const reply = await tcpQuery("127.0.0.1", port, packet, { timeoutMs });
    if (!reply) {
      throw new Error(`connection closed without a reply, or none within ${timeoutMs} ms`);
    }
    return reply;
  }
  const reply = await udpQuery("127.0.0.1", port, packet, { timeoutMs, tries: 1 });
  if (!reply) throw new Error(`no reply from 127.0.0.1:${port} within ${timeoutMs} ms`);
  return reply;
}

/** Parses `corefileBody` as one `. { ... }` block and returns its directives named `name`. */
export function directivesOf(name: string, corefileBody: string): Directive[] {
  const blocks = parseCorefile(`. {\n${corefileBody}\n}\n`, "Corefile", {
    isDirective: (n) => ["forward", "cache", "loadbalance", "whoami", "log", "errors"].includes(n),
  });
  return blocks[0].directives.filter((d) => d.name.text === name);
}

/** A SetupContext for `directives`, collecting shutdown hooks. */
export function setupContext(
  directives: Directive[],
  extra: Partial<SetupContext> = {},
): SetupContext & { shutdown(): Promise<void> } {
  const hooks: ShutdownHook[] = [];
  return {
    directives,
    zones: ["."],
    port: 53,
    configDir: Deno.cwd(),
    serverOptions: { bind: [] },
    resources: { acquire: (_key, create) => create() },
    log: quietLog,
    server: {
      readCorefile: () => Promise.reject(new Error("no Corefile reader installed")),
      reload: () => Promise.resolve(false),
    },
    onStartup: () => {},
    onShutdown: (fn) => hooks.push(fn),
    fatal: (err) => {
      throw err;
    },
    ...extra,
    async shutdown() {
      for (const fn of hooks) await fn({ final: true });
    },
  };
}

/** A Request as the dispatcher would build it, for driving a plugin directly. */
export function fakeRequest(
  name: string,
  type: number,
  options: {
    transport?: "udp" | "tcp";
    dnssecOk?: boolean;
    udpSize?: number;
    cd?: boolean;
    rd?: boolean;
    ad?: boolean;
    cls?: number;
    opcode?: number;
  } = {},
): Request {
  const edns = options.dnssecOk || options.udpSize
    ? {
      udpSize: options.udpSize ?? 1232,
      extendedRcode: 0,
      version: 0,
      dnssecOk: options.dnssecOk ?? false,
      options: [],
    }
    : null;
  return {
    id: 4242,
    opcode: options.opcode ?? 0,
    rd: options.rd ?? true,
    cd: options.cd ?? false,
    ad: options.ad ?? false,
    question: { name, type, class: options.cls ?? Class.INET },
    qname: lowerName(name),
    edns,
    transport: options.transport ?? "udp",
    remoteAddress: "127.0.0.1",
    remotePort: 5353,
    localAddress: "127.0.0.1",
    localPort: 53,
    size: 40,
    zone: ".",
    depth: 0,
    lookup: () => Promise.reject(new Error("no lookups in tests")),
    observe: () => {},
  };
}

/** A plugin answering every query with `records(qname)`, counting calls. */
export function answering(
  name: string,
  records: (req: Request) => RR[],
  fields: Partial<Reply> = {},
): Plugin & { calls: number } {
  const plugin = {
    name,
    calls: 0,
    serve(req: Request): Promise<Reply> {
      plugin.calls++;
      return Promise.resolve({
        rcode: 0,
        authoritative: true,
        answer: records(req),
        authority: [],
        additional: [],
        plugin: name,
        ...fields,
      });
    },
  };
  return plugin;
}
