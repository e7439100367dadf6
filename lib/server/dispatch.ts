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
import { Class, type OPTData, type Question, Rcode, type RR, Type } from "../dns/types.ts";
import { lowerName, nextDot } from "../dns/name.ts";
import type { BlockRuntime, ListenerConfig } from "./config.ts";
import { bareReply, type Reply, type Request } from "./plugin.ts";
import type { Logger } from "../log.ts";
import { AnswerCache, answerKey } from "./answer_cache.ts";

/** Where a packet came from. */
export interface Peer {
  transport: "udp" | "tcp";
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** What a written reply looked like, for log and metrics observers. */
export interface Written {
  rcode: number;
  size: number;
  truncated: boolean;
  authoritative: boolean;
  recursionAvailable: boolean;
  authenticData: boolean;
  recursionDesired: boolean;
  checkingDisabled: boolean;
  /** The block that served it, or undefined when none did (REFUSED, FORMERR). */
  block?: BlockRuntime;
  /** The matched zone ("." for the catch-all, "" when unrouted). */
  zone: string;
  /** The plugin that produced the reply. */
  plugin?: string;
  question?: Question;
  /** The message as sent (after truncation decisions; records as produced). */
  message: Message;
}

/** Request plus the server-internal hooks. */
export interface ServerRequest extends Request {
  /** Called after the reply is encoded (log, prometheus). */
  readonly observers: ((written: Written) => void)[];
}

/** Observes every packet the dispatcher answers (even unrouted ones), for metrics. */
export type PacketObserver = (
  req: ServerRequest | undefined,
  written: Written,
  peer: Peer,
  requestSize: number,
) => void;

/** Maximum depth of internal re-entry (CNAME chasing through the server). */
const MAX_DEPTH = 8;

/** Strips the ::ffff: prefix of IPv4-mapped addresses. */
export function unmapAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** Routes and answers queries for one listener's zones. */
export class Dispatcher {
  #zones: Map<string, BlockRuntime>;
  #log: Logger;
  #answers = new AnswerCache();
  /** Whether any block on this listener may answer classes other than IN. */
  #anyClass: boolean;
  /** Bumped on reload, so a reply of the old configuration is not kept. */
  #epoch = 0;
  /** Extra observer for every packet (the prometheus plugin's `dropped` zone). */
  packetObserver?: PacketObserver;

  constructor(listener: ListenerConfig, log: Logger) {
    this.#zones = listener.zones;
    this.#anyClass = anyClass(listener);
    this.#log = log;
  }

  /** Swaps in a new configuration's zones (reload), atomically for new queries. */
  update(listener: ListenerConfig): void {
    this.#zones = listener.zones;
    this.#anyClass = anyClass(listener);
    this.#epoch++;
    this.#answers.clear();
  }

  /** The fast-path key of a packet (see answer_cache.ts), or undefined. */
  keyOf(packet: Uint8Array, transport: "udp" | "tcp"): string | undefined {
    return answerKey(packet, transport);
  }

  /** A kept reply for `packet`, ready to send, or undefined: synchronous, no allocation but the copy. */
  cached(key: string, packet: Uint8Array): Uint8Array | undefined {
    return this.#answers.reply(key, packet);
  }

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
      block?: BlockRuntime,
    ) =>
      this.#finish(
        packet.length,
        bareMessage(header, rcode, question),
        edns,
        peer,
        undefined,
        zone,
        block,
      );
    if ("kind" in parsed) {
      if (parsed.kind === "drop") return null;
      return refuse(parsed.header, parsed.rcode, parsed.question, parsed.edns);
    }
    const { header, question, edns } = parsed;
    if (parsed.badOpt) return refuse(header, Rcode.FormatError, question, null);
    // CoreDNS's order: the class (other classes only where the server has a
    // forward), then the EDNS version, then routing.
    if (question.class !== Class.INET && !this.#anyClass) {
      return refuse(header, Rcode.Refused, question, edns);
    }
    if (edns && edns.version !== 0) return refuse(header, Rcode.BadVers, question, edns);
    const qname = lowerName(question.name);
    const routed = this.route(qname, question.type);
    if (!routed) return refuse(header, Rcode.Refused, question, edns);
    const [zone, block] = routed;
    if (!block.chain) return refuse(header, Rcode.Refused, question, edns, zone, block);
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
    const bytes = this.#finish(packet.length, message, edns, peer, req, zone, block, reply.plugin);
    if (
      key !== undefined && reply.cacheGeneration && req.observers.length === 0 &&
      epoch === this.#epoch &&
      reply.error === undefined && (bytes[3] & 0xf) === (reply.rcode & 0xf)
    ) {
      this.#answers.store(key, bytes, reply.cacheGeneration);
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
      observers: [],
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
    const req = this.#request(header, question, qname, edns, peer, zone, 0, depth);
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
    block: BlockRuntime | undefined,
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
    } catch (err) {
      this.#log.error(
        `cannot encode reply to ${message.question[0]?.name ?? "?"}: ${(err as Error).message}`,
      );
      const fallback = bareMessage(message, Rcode.ServerFailure, message.question[0]);
      if (edns) fallback.additional.push(optRecord(edns.udpSize, edns.dnssecOk));
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
      block,
      zone,
      plugin,
      question: message.question[0],
      message,
    };
    if (req) {
      for (const observe of req.observers) {
        try {
          observe(written);
        } catch (err) {
          this.#log.error(`observer failed: ${(err as Error).message}`);
        }
      }
    }
    try {
      this.packetObserver?.(req, written, peer, requestSize);
    } catch (err) {
      this.#log.error(`packet observer failed: ${(err as Error).message}`);
    }
    return bytes;
  }
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

/** CoreDNS lets other classes through when the server's chains hold a forward. */
function anyClass(listener: ListenerConfig): boolean {
  for (const block of listener.zones.values()) if (block.anyClass) return true;
  return false;
}

/** A reply with no records: id, opcode, RD, CD and the question copied (miekg's SetRcode). */
function bareMessage(
  header: Header,
  rcode: number,
  question: Question | undefined,
): Message {
  return {
    id: header.id,
    response: true,
    opcode: header.opcode,
    authoritative: false,
    truncated: false,
    recursionDesired: header.recursionDesired,
    recursionAvailable: false,
    zero: false,
    authenticData: false,
    checkingDisabled: header.checkingDisabled,
    rcode,
    question: question ? [question] : [],
    answer: [],
    authority: [],
    additional: [],
  };
}

function replyMessage(header: Header, question: Question, reply: Reply): Message {
  if (reply.bare) return bareMessage(header, reply.rcode, question);
  return {
    id: header.id,
    response: true,
    opcode: header.opcode,
    authoritative: reply.authoritative,
    truncated: reply.truncated ?? false,
    recursionDesired: header.recursionDesired,
    recursionAvailable: reply.recursionAvailable ?? false,
    zero: false,
    authenticData: reply.authenticData ?? false,
    checkingDisabled: header.checkingDisabled,
    rcode: reply.rcode,
    question: [question],
    answer: reply.answer,
    authority: reply.authority,
    additional: reply.additional.slice(),
  };
}
