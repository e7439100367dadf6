/**
 * From a packet to a reply: parse, route by zone, run the chain, encode.
 *
 * Transport-free so tests can drive it directly; lib/server/listen.ts feeds
 * it from sockets. Nothing here throws: every failure becomes a DNS answer
 * (FORMERR, NOTIMP, REFUSED, SERVFAIL) or, for packets not worth answering,
 * no answer at all.
 *
 * @module
 */

import {
  encodeMessage,
  type Header,
  MAX_MESSAGE_SIZE,
  type Message,
  MIN_UDP_SIZE,
  parseQuery,
} from "../dns/wire.ts";
import {
  Class,
  EdnsOption,
  Opcode,
  type OPTData,
  type Question,
  Rcode,
  type RR,
  TsigError,
  Type,
} from "../dns/types.ts";
import { lowerName, nextDot } from "../dns/name.ts";
import type { BlockRuntime, ListenerConfig } from "./config.ts";
import {
  bareReply,
  DEFAULT_UDP_SIZE,
  type FastObserver,
  type Reply,
  type Request,
  type Written,
} from "./plugin.ts";
import type { Logger } from "../log.ts";
import { AnswerCache, answerKey } from "./answer_cache.ts";
import {
  DROPPED_ZONE,
  familyLabel,
  type QueryMetrics,
  queryMetrics,
  reportQuery,
  serverLabel,
} from "./vars.ts";

/** Where a packet came from. */
export interface Peer {
  /** The transport the packet arrived on. */
  transport: "udp" | "tcp";
  /** The client's address, IPv4-mapped addresses unwrapped. */
  remoteAddress: string;
  /** The client's port. */
  remotePort: number;
  /** The local address the packet arrived on, unwrapped likewise. */
  localAddress: string;
  /** The local port. */
  localPort: number;
}

/** One end of a conversation: an address and a port. */
export interface Endpoint {
  /** The address as text (IPv4-mapped IPv6 allowed: the dispatcher unwraps it). */
  readonly address: string;
  /** The port. */
  readonly port: number;
}

/** Request plus what only the dispatcher reads. */
export interface ServerRequest extends Request {
  /** What {@link Request.observe} registered: called after the reply is encoded. */
  readonly observers: ((written: Written) => FastObserver | void)[];
  /**
   * After the observers ran: what they returned for the fast path, or null
   * when one returned nothing (the reply must not be kept).
   */
  fastObservers?: FastObserver[] | null;
}

/** Maximum depth of internal re-entry (CNAME chasing through the server). */
const MAX_DEPTH = 8;

/**
 * The request's EDNS0 with its UDP size lowered to the block's cap, as
 * CoreDNS's bufsize rewrites the request's OPT (so the reply echoes the
 * lowered size and truncates at it). The same object when nothing changes.
 */
function capEdns(edns: OPTData | null, block: BlockRuntime): OPTData | null {
  if (!edns) return edns;
  const cap = block.udpSize ?? DEFAULT_UDP_SIZE;
  return edns.udpSize > cap ? { ...edns, udpSize: cap } : edns;
}

/** Strips the ::ffff: prefix of IPv4-mapped addresses. */
export function unmapAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** How a {@link Dispatcher} runs. */
export interface DispatcherOptions {
  /**
   * Whether kept replies answer repeated queries without the chain (default
   * true). Off, every query takes the full path: what the fast path must
   * be indistinguishable from (lib/server/fast_path_test.ts).
   */
  fastPath?: boolean;
}

/** Routes and answers queries for one listener's zones. */
export class Dispatcher {
  #zones: Map<string, BlockRuntime>;
  /** The listen address ("" for every address), for the `server` label of dropped queries. */
  #host: string;
  #log: Logger;
  #answers = new AnswerCache();
  /** Whether any block on this listener may answer classes other than IN. */
  #anyClass: boolean;
  /** Bumped on reload, so a reply of the old configuration is not kept. */
  #epoch = 0;
  /** The query metrics, looked up on the first dropped query (most servers never drop one). */
  #metrics?: QueryMetrics;
  /** Whether any block on this listener may keep replies (decided when its chain was built). */
  #fast: boolean;
  /** The last local endpoint a fast hit was observed on, with its address unmapped. */
  #local?: [Endpoint, string];
  // The fast hit being answered, for #notify, which reads them only during the synchronous
  // replyTo call. Fields, not an object: nothing is allocated per query, and the clock is
  // read only when some kept reply has observers to tell the duration to.
  #hitTransport: "udp" | "tcp" = "udp";
  #hitClient?: Endpoint;
  #hitLocal?: Endpoint;
  #hitSize = 0;
  #hitT0 = 0;

  /** False when the fast path is switched off: every query runs its chain. */
  #fastPath: boolean;

  /** Serves `listener`'s zones; `options.fastPath` false runs every query through its chain. */
  constructor(listener: ListenerConfig, log: Logger, options: DispatcherOptions = {}) {
    this.#zones = listener.zones;
    this.#host = listener.host;
    this.#anyClass = anyClass(listener);
    this.#fastPath = options.fastPath ?? true;
    this.#fast = this.#fastPath && anyFast(listener);
    this.#log = log;
  }

  /** Swaps in a new configuration's zones (reload), atomically for new queries. */
  update(listener: ListenerConfig): void {
    this.#zones = listener.zones;
    this.#anyClass = anyClass(listener);
    this.#fast = this.#fastPath && anyFast(listener);
    this.#epoch++;
    this.#answers.clear();
  }

  /**
   * Answers one packet from a socket: a kept reply at once (the fast path,
   * synchronous), else the full path's promise. `packet` and `client` need
   * only be valid during this call (the full path copies what it keeps).
   */
  answer(
    packet: Uint8Array,
    transport: "udp" | "tcp",
    client: Endpoint,
    local: Endpoint,
  ): Uint8Array | Promise<Uint8Array | null> {
    if (this.#fast) {
      this.#hitTransport = transport;
      this.#hitClient = client;
      this.#hitLocal = local;
      this.#hitSize = packet.length;
      this.#hitT0 = this.#answers.observed ? performance.now() : 0;
      let hit: Uint8Array | undefined;
      try {
        hit = this.#answers.replyTo(packet, transport, this.#notify);
      } catch (err) {
        // A kept reply's check failed (a plugin's Reuse threw): the chain answers.
        this.#log.error(`fast path: ${(err as Error).message}`);
      }
      if (hit) return hit;
    }
    // The string key only on a miss: the full path keeps its reply under it.
    const key = this.#fast ? answerKey(packet, transport) : undefined;
    const peer: Peer = {
      transport,
      remoteAddress: client.address,
      remotePort: client.port,
      localAddress: unmapAddress(local.address),
      localPort: local.port,
    };
    return this.handle(packet.slice(), peer, key);
  }

  /** Tells a kept reply's observers of one fast-path answer. */
  #notify = (observers: readonly FastObserver[], size: number): void => {
    const local = this.#hitLocal!;
    // A listener passes the same local endpoint every time: unmap its address once.
    if (local !== this.#local?.[0]) this.#local = [local, unmapAddress(local.address)];
    const hit = {
      transport: this.#hitTransport,
      remoteAddress: this.#hitClient!.address,
      localAddress: this.#local[1],
      localPort: local.port,
      requestSize: this.#hitSize,
      responseSize: size,
      seconds: (performance.now() - this.#hitT0) / 1000,
    };
    for (const observe of observers) {
      try {
        observe(hit);
      } catch (err) {
        this.#log.error(`fast-path observer failed: ${(err as Error).message}`);
      }
    }
  };

  /**
   * Longest-suffix match, then ".", as CoreDNS's ServeDNS does. A DS query is
   * routed to the topmost matching zone instead, so the parent side of a
   * zone cut answers it.
   */
  route(qname: string, qtype = 0): [string, BlockRuntime] | undefined {
    const zones = this.#zones;
    let name = qname;
    let forDS: [string, BlockRuntime] | undefined;
    while (true) {
      const block = zones.get(name);
      if (block && name !== ".") {
        if (qtype !== Type.DS) return [name, block];
        forDS = [name, block];
      }
      const dot = nextDot(name);
      if (dot < 0 || dot === name.length - 1) break;
      name = name.slice(dot + 1);
    }
    if (forDS) return forDS;
    const root = zones.get(".");
    return root ? [".", root] : undefined;
  }

  /**
   * Answers one packet. Resolves to the bytes to send, or null when the
   * packet gets no answer (runts, responses).
   */
  async handle(packet: Uint8Array, peer: Peer, key?: string): Promise<Uint8Array | null> {
    const parsed = parseQuery(packet);
    // A bare reply with `rcode`, for queries no chain answers.
    const refuse = (
      header: Header,
      rcode: number,
      question: Question | undefined,
      edns: OPTData | null,
      zone = "",
      keepFlags = false,
    ) =>
      this.#finish(
        packet.length,
        bareMessage(header, rcode, question, keepFlags),
        edns,
        peer,
        undefined,
        zone,
      );
    if ("kind" in parsed) {
      if (parsed.kind === "drop") return null;
      // NOTIMP clears CD, as Knot does: nothing was checked or not checked.
      // (miekg/dns, hence CoreDNS, copies every flag of the query.)
      const header = parsed.rcode === Rcode.NotImplemented
        ? { ...parsed.header, checkingDisabled: false }
        : parsed.header;
      return refuse(header, parsed.rcode, parsed.question, parsed.edns, "", true);
    }
    const { header, question } = parsed;
    let edns = parsed.edns;
    if (parsed.badOpt) {
      return refuse(header, Rcode.FormatError, question, null, "", true);
    }
    // idetcd holds no TSIG keys, so a signed query names a key it does not
    // know: RFC 8945 section 5.2.2 asks for NOTAUTH with TSIG error BADKEY,
    // unsigned. (CoreDNS without its tsig plugin ignores the record.)
    if (parsed.tsig) {
      const reply = bareMessage(header, Rcode.NotAuth, question);
      const tsig = badKeyTsig(parsed.tsig, header.id);
      if (tsig) reply.additional.push(tsig);
      return this.#finish(packet.length, reply, edns, peer, undefined, "");
    }
    // CoreDNS's order: the class (other classes only where the server has a
    // forward), then the EDNS version, then routing.
    if (question.class !== Class.INET && !this.#anyClass) {
      return refuse(header, Rcode.Refused, question, edns);
    }
    if (edns && edns.version !== 0) {
      // CoreDNS's edns.Version reply: a fresh OPT, version 0, size 0, no DO.
      return refuse(header, Rcode.BadVers, question, { ...edns, udpSize: 0, dnssecOk: false });
    }
    const qname = lowerName(question.name);
    const routed = this.route(qname, question.type);
    if (!routed) return refuse(header, Rcode.Refused, question, edns);
    const [zone, block] = routed;
    if (!block.chain) return refuse(header, Rcode.Refused, question, edns, zone);
    edns = capEdns(edns, block);
    const req = this.#request(header, question, qname, edns, peer, zone, packet.length, 0);
    const epoch = this.#epoch;
    let reply: Reply;
    try {
      reply = await block.chain(req);
    } catch (err) {
      this.#log.error(
        `${question.name} ${question.type}: plugin failed: ${
          err instanceof Error ? err.stack ?? err.message : String(err)
        }`,
      );
      reply = bareReply(Rcode.ServerFailure);
    }
    const message = replyMessage(header, question, reply);
    const bytes = this.#finish(packet.length, message, edns, peer, req, zone, reply.plugin);
    // Kept only when the chain may keep anything, the reply says how it stays
    // right, every observer gave a fast counterpart (a plugin that needs the
    // full path registers one that does not), and it was sent as produced.
    if (
      key !== undefined && block.fast && (reply.reuse || reply.cacheGeneration) &&
      req.fastObservers && epoch === this.#epoch &&
      reply.error === undefined && (bytes[3] & 0xf) === (reply.rcode & 0xf)
    ) {
      this.#answers.store(key, bytes, {
        reuse: reply.reuse,
        generation: reply.cacheGeneration,
        observers: req.fastObservers,
      });
    }
    return bytes;
  }

  #request(
    header: Header,
    question: Question,
    qname: string,
    edns: OPTData | null,
    peer: Peer,
    zone: string,
    size: number,
    depth: number,
  ): ServerRequest {
    const observers: ((written: Written) => FastObserver | void)[] = [];
    return {
      id: header.id,
      opcode: header.opcode,
      rd: header.recursionDesired,
      cd: header.checkingDisabled,
      ad: header.authenticData,
      question,
      qname,
      edns,
      transport: peer.transport,
      remoteAddress: peer.remoteAddress,
      remotePort: peer.remotePort,
      localAddress: peer.localAddress,
      localPort: peer.localPort,
      size,
      zone,
      depth,
      observers,
      observe: (fn) => {
        observers.push(fn);
      },
      lookup: (name, type) => this.#lookup(header, edns, peer, name, type, depth + 1),
    };
  }

  /** Runs a question through routing and chains again, capturing the reply (CoreDNS upstream). */
  async #lookup(
    header: Header,
    edns: OPTData | null,
    peer: Peer,
    name: string,
    type: number,
    depth: number,
  ): Promise<Reply> {
    const question = { name, type, class: Class.INET };
    if (depth > MAX_DEPTH) return bareReply(Rcode.ServerFailure);
    const qname = lowerName(name);
    const routed = this.route(qname, type);
    if (!routed || !routed[1].chain) return bareReply(Rcode.Refused);
    const [zone, block] = routed;
    const req = this.#request(
      header,
      question,
      qname,
      capEdns(edns, block),
      peer,
      zone,
      0,
      depth,
    );
    try {
      return await block.chain!(req);
    } catch {
      return bareReply(Rcode.ServerFailure);
    }
  }

  #finish(
    requestSize: number,
    message: Message,
    edns: OPTData | null,
    peer: Peer,
    req: ServerRequest | undefined,
    zone: string,
    plugin?: string,
  ): Uint8Array {
    if (edns) {
      // Echo the client's EDNS0 intent, as CoreDNS's SizeAndDo does.
      message.additional = message.additional.filter((r) => r.type !== Type.OPT);
      message.additional.push(optRecord(edns.udpSize, edns.dnssecOk));
    }
    const limit = peer.transport === "tcp"
      ? MAX_MESSAGE_SIZE
      : Math.max(MIN_UDP_SIZE, edns ? edns.udpSize : MIN_UDP_SIZE);
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(message, limit);
      if (peer.transport === "tcp" && !message.truncated && (bytes[2] & 0x02) !== 0) {
        // More than 65,535 bytes: TC means "retry over TCP", which this is.
        // CoreDNS sends the empty truncated reply (NOERROR, no answer) and
        // the client has no way to tell; a SERVFAIL with an extended error
        // (RFC 8914) says what happened. Over UDP the TC reply stands, so the
        // client comes here.
        throw new OversizeError();
      }
    } catch (err) {
      const oversize = err instanceof OversizeError;
      this.#log.error(
        `cannot encode reply to ${message.question[0]?.name ?? "?"}: ${(err as Error).message}`,
      );
      const fallback = bareMessage(message, Rcode.ServerFailure, message.question[0]);
      if (edns) {
        const opt = optRecord(edns.udpSize, edns.dnssecOk);
        if (oversize) (opt.data as OPTData).options.push(extendedError(0, OVERSIZE_TEXT));
        fallback.additional.push(opt);
      }
      bytes = encodeMessage(fallback, limit);
      message = fallback;
    }
    const flags = (bytes[2] << 8) | bytes[3];
    const written: Written = {
      rcode: message.rcode,
      size: bytes.length,
      truncated: (flags & 0x0200) !== 0,
      authoritative: message.authoritative,
      recursionAvailable: message.recursionAvailable,
      authenticData: message.authenticData,
      recursionDesired: message.recursionDesired,
      checkingDisabled: message.checkingDisabled,
      zone,
      plugin,
      question: message.question[0],
      message,
    };
    if (req) {
      let fast: FastObserver[] | null = [];
      for (const observe of req.observers) {
        try {
          const onHit = observe(written);
          if (typeof onHit === "function") fast?.push(onHit);
          else fast = null;
        } catch (err) {
          fast = null;
          this.#log.error(`observer failed: ${(err as Error).message}`);
        }
      }
      req.fastObservers = fast;
    } else if (written.rcode === Rcode.Refused || written.rcode === Rcode.ServerFailure) {
      this.#reportDropped(written, peer, requestSize, edns);
    }
    return bytes;
  }

  /**
   * Counts a query answered before any chain (no zone, an empty block)
   * under zone "dropped", as CoreDNS's errorAndMetricsFunc does; the chain's
   * own answers are the prometheus plugin's to count.
   */
  #reportDropped(
    written: Written,
    peer: Peer,
    requestSize: number,
    edns: OPTData | null,
  ): void {
    try {
      // A bind address labels the server only when the packet arrived on it.
      const host = this.#host !== "" && this.#host === peer.localAddress ? this.#host : "";
      this.#metrics ??= queryMetrics();
      reportQuery(this.#metrics, {
        server: serverLabel(host, peer.localPort),
        zone: DROPPED_ZONE,
        view: "",
        proto: peer.transport,
        family: familyLabel(peer.remoteAddress),
        qtype: written.question?.type,
        dnssecOk: edns?.dnssecOk ?? false,
        rcode: written.rcode,
        plugin: "",
        requestSize,
        responseSize: written.size,
        seconds: 0,
      });
    } catch (err) {
      this.#log.error(`dropped-query metrics failed: ${(err as Error).message}`);
    }
  }
}

/** Why a TCP reply became SERVFAIL, for the log and the extended error's text. */
const OVERSIZE_TEXT = "answer larger than 65535 bytes";

/** The reply did not fit in a TCP message. */
class OversizeError extends Error {
  constructor() {
    super(OVERSIZE_TEXT);
    this.name = "OversizeError";
  }
}

/** An RFC 8914 Extended DNS Error option: INFO-CODE, then EXTRA-TEXT in UTF-8. */
function extendedError(infoCode: number, text: string): { code: number; data: Uint8Array } {
  const utf8 = new TextEncoder().encode(text);
  const data = new Uint8Array(2 + utf8.length);
  data[0] = infoCode >> 8;
  data[1] = infoCode & 0xff;
  data.set(utf8, 2);
  return { code: EdnsOption.ExtendedError, data };
}

/**
 * The TSIG record of an unsigned BADKEY reply (RFC 8945 sections 5.2.2 and
 * 5.3.2): the query's key name, algorithm, time signed and fudge; no MAC;
 * the original ID; error 17; no other data. Undefined when the query's TSIG
 * rdata is too malformed to copy from.
 */
function badKeyTsig(query: RR, originalId: number): RR | undefined {
  const rdata = query.data;
  if (!(rdata instanceof Uint8Array)) return undefined;
  // The algorithm name is never compressed (RFC 8945 section 4.2).
  let o = 0;
  while (o < rdata.length && rdata[o] !== 0) {
    if (rdata[o] > 63) return undefined;
    o += rdata[o] + 1;
  }
  const nameEnd = o + 1;
  if (nameEnd + 10 > rdata.length) return undefined;
  const out = new Uint8Array(nameEnd + 16);
  out.set(rdata.subarray(0, nameEnd + 8)); // algorithm, time signed (48 bits), fudge
  // MAC size 0, no MAC.
  out[nameEnd + 10] = originalId >> 8;
  out[nameEnd + 11] = originalId & 0xff;
  out[nameEnd + 12] = TsigError.BadKey >> 8;
  out[nameEnd + 13] = TsigError.BadKey & 0xff;
  // Other length 0.
  return { name: query.name, type: Type.TSIG, class: Class.ANY, ttl: 0, data: out };
}

function optRecord(udpSize: number, dnssecOk: boolean): RR {
  return {
    name: ".",
    type: Type.OPT,
    class: udpSize,
    ttl: 0,
    data: { udpSize, extendedRcode: 0, version: 0, dnssecOk, options: [] },
  };
}

/** Whether any block of the listener may keep replies for the fast path. */
function anyFast(listener: ListenerConfig): boolean {
  for (const block of listener.zones.values()) if (block.fast) return true;
  return false;
}

/** CoreDNS lets other classes through when the server's chains hold a forward. */
function anyClass(listener: ListenerConfig): boolean {
  for (const block of listener.zones.values()) if (block.anyClass) return true;
  return false;
}

/**
 * A reply with no records: id, opcode and the question copied, RD and CD
 * too for a QUERY (miekg's SetRcode/SetReply copy them for no other opcode).
 * `keepFlags` copies RD and CD whatever the opcode, as miekg/dns's reject
 * path (FORMERR, NOTIMP) does.
 */
function bareMessage(
  header: Header,
  rcode: number,
  question: Question | undefined,
  keepFlags = false,
): Message {
  const copy = keepFlags || header.opcode === Opcode.Query;
  return {
    id: header.id,
    response: true,
    opcode: header.opcode,
    authoritative: false,
    truncated: false,
    recursionDesired: copy && header.recursionDesired,
    recursionAvailable: false,
    zero: false,
    authenticData: false,
    checkingDisabled: copy && header.checkingDisabled,
    rcode,
    question: question ? [question] : [],
    answer: [],
    authority: [],
    additional: [],
  };
}

function replyMessage(header: Header, question: Question, reply: Reply): Message {
  if (reply.bare) return bareMessage(header, reply.rcode, question);
  const copy = header.opcode === Opcode.Query;
  return {
    id: header.id,
    response: true,
    opcode: header.opcode,
    authoritative: reply.authoritative,
    truncated: reply.truncated ?? false,
    recursionDesired: copy && header.recursionDesired,
    recursionAvailable: reply.recursionAvailable ?? false,
    zero: false,
    authenticData: reply.authenticData ?? false,
    checkingDisabled: copy && header.checkingDisabled,
    rcode: reply.rcode,
    question: [question],
    answer: reply.answer,
    authority: reply.authority,
    additional: reply.additional.slice(),
  };
}
