/**
 * DNS wire format (RFC 1035, 3596, 2782, 6891): decoding queries and
 * messages, and encoding replies with name compression and truncation.
 *
 * Written for the query path: `parseQuery` reads only the header, the
 * question and the OPT record; `encodeMessage` writes into one reused buffer.
 * Records of types idetcd does not model keep their RDATA as raw bytes
 * (RFC 3597), so forwarded answers pass through unchanged.
 *
 * @module
 */

import {
  Class,
  type MXData,
  Opcode,
  type OPTData,
  type Question,
  Rcode,
  type RData,
  type RR,
  type SOAData,
  type SRVData,
  Type,
} from "./types.ts";
import { ipv6ToString, parseIPv4, parseIPv6 } from "../go/ip.ts";

/** The 12-byte header, unpacked. */
export interface Header {
  /** The message ID that pairs a reply with its query. */
  id: number;
  /** QR: true for responses. */
  response: boolean;
  /** The OPCODE (0 for a standard query). */
  opcode: number;
  /** AA: the answer comes from the zone's authority. */
  authoritative: boolean;
  /** TC: the message was cut to fit. */
  truncated: boolean;
  /** RD: the client asks for recursion. */
  recursionDesired: boolean;
  /** RA: the server offers recursion. */
  recursionAvailable: boolean;
  /** The Z bit (must be zero). */
  zero: boolean;
  /** AD: the data is authenticated (DNSSEC). */
  authenticData: boolean;
  /** CD: the client checks signatures itself. */
  checkingDisabled: boolean;
  /** Full rcode: the header's 4 bits plus the OPT extension when present. */
  rcode: number;
}

/** A whole message. OPT, when present, is the last record of `additional`. */
export interface Message extends Header {
  /** The questions (one in practice). */
  question: Question[];
  /** The answer section. */
  answer: RR[];
  /** The authority section. */
  authority: RR[];
  /** The additional section (OPT last, when present). */
  additional: RR[];
}

/** Thrown for malformed wire data. */
export class WireError extends Error {
  /** `message` says what was malformed and where. */
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

/** Maximum UDP payload without EDNS0. */
export const MIN_UDP_SIZE = 512;
/** Maximum DNS message size (TCP). */
export const MAX_MESSAGE_SIZE = 65535;

// ---------------------------------------------------------------- decoding

const textDecoder = new TextDecoder("latin1");

/**
 * miekg/dns `isDomainNameLabelSpecial`: the bytes a label presents as `\X`.
 * Space is `\ ` (not `\032`) and `'` is `\'`, while `$` stays as it is:
 * CoreDNS derives etcd keys from this text, so it must match byte for byte.
 */
function isLabelSpecial(c: number): boolean {
  return c === 0x2e || c === 0x20 || c === 0x27 || c === 0x40 || c === 0x3b || c === 0x28 ||
    c === 0x29 || c === 0x22 || c === 0x5c;
}

/** Presentation form of one label, as miekg/dns's UnpackDomainName writes it. */
function labelToString(buf: Uint8Array, start: number, end: number): string {
  let plain = true;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c < 0x20 || c > 0x7e || isLabelSpecial(c)) {
      plain = false;
      break;
    }
  }
  if (plain) return textDecoder.decode(buf.subarray(start, end));
  let s = "";
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (isLabelSpecial(c)) s += "\\" + String.fromCharCode(c);
    else if (c < 0x20 || c > 0x7e) s += "\\" + String(c).padStart(3, "0");
    else s += String.fromCharCode(c);
  }
  return s;
}

/** Reads a (possibly compressed) name at `offset`; returns it and the offset after it. */
export function readName(buf: Uint8Array, offset: number): [string, number] {
  let name = "";
  let pos = offset;
  let end = -1;
  let jumps = 0;
  let wireLength = 0;
  while (true) {
    if (pos >= buf.length) throw new WireError("name overflows message");
    const len = buf[pos];
    if (len === 0) {
      pos++;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) throw new WireError("pointer overflows message");
      if (++jumps > 126) throw new WireError("too many compression pointers");
      if (end < 0) end = pos + 2;
      pos = ((len & 0x3f) << 8) | buf[pos + 1];
      continue;
    }
    if (kind !== 0) throw new WireError("unsupported label type");
    if (pos + 1 + len > buf.length) throw new WireError("label overflows message");
    wireLength += len + 1;
    if (wireLength > 254) throw new WireError("name longer than 255 bytes");
    name += labelToString(buf, pos + 1, pos + 1 + len) + ".";
    pos += 1 + len;
  }
  return [name === "" ? "." : name, end < 0 ? pos : end];
}

function u16(buf: Uint8Array, o: number): number {
  return (buf[o] << 8) | buf[o + 1];
}

function u32(buf: Uint8Array, o: number): number {
  return ((buf[o] << 24) >>> 0) + ((buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]);
}

function readHeader(buf: Uint8Array): Header {
  const flags = u16(buf, 2);
  return {
    id: u16(buf, 0),
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    authoritative: (flags & 0x0400) !== 0,
    truncated: (flags & 0x0200) !== 0,
    recursionDesired: (flags & 0x0100) !== 0,
    recursionAvailable: (flags & 0x0080) !== 0,
    zero: (flags & 0x0040) !== 0,
    authenticData: (flags & 0x0020) !== 0,
    checkingDisabled: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
  };
}

/**
 * RDATA layouts of the types whose names a sender may have compressed: the
 * RFC 1035 ones and those RFC 3597 section 4 asks receivers to decompress.
 * "n" is a domain name, "2" a 16-bit field, "s" a character-string.
 */
const NAME_LAYOUTS: Record<number, string> = {
  3: "n", // MD
  4: "n", // MF
  7: "n", // MB
  8: "n", // MG
  9: "n", // MR
  14: "nn", // MINFO
  17: "nn", // RP
  18: "2n", // AFSDB
  21: "2n", // RT
  26: "2nn", // PX
  35: "22sssn", // NAPTR
  36: "2n", // KX
};

/** The uncompressed wire form of a name. */
function nameToWire(name: string): Uint8Array {
  const labels = nameToLabels(name);
  const out = new Uint8Array(labels.reduce((n, l) => n + l.length + 1, 1));
  let at = 0;
  for (const l of labels) {
    out[at++] = l.length;
    out.set(l, at);
    at += l.length;
  }
  return out;
}

function ipv4ToString(buf: Uint8Array, o: number): string {
  return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The character-strings of a TXT rdata; undefined when one is not valid UTF-8. */
function readCharacterStrings(buf: Uint8Array, start: number, end: number): string[] | undefined {
  const out: string[] = [];
  let o = start;
  let utf8 = true;
  while (o < end) {
    const len = buf[o];
    if (o + 1 + len > end) throw new WireError("character-string overflows rdata");
    if (utf8) {
      try {
        out.push(strictUtf8.decode(buf.subarray(o + 1, o + 1 + len)));
      } catch {
        utf8 = false;
      }
    }
    o += 1 + len;
  }
  return utf8 ? out : undefined;
}

function readRData(buf: Uint8Array, type: number, start: number, len: number): RData {
  const end = start + len;
  switch (type) {
    case Type.A:
      if (len !== 4) throw new WireError("A rdata is not 4 bytes");
      return ipv4ToString(buf, start);
    case Type.AAAA:
      if (len !== 16) throw new WireError("AAAA rdata is not 16 bytes");
      return ipv6ToString(buf, start);
    case Type.CNAME:
    case Type.NS:
    case Type.PTR: {
      const [name, after] = readName(buf, start);
      if (after !== end) throw new WireError("name rdata length mismatch");
      return name;
    }
    case Type.MX: {
      if (len < 3) throw new WireError("short MX rdata");
      const [exchange, after] = readName(buf, start + 2);
      if (after !== end) throw new WireError("MX rdata length mismatch");
      return { preference: u16(buf, start), exchange } satisfies MXData;
    }
    case Type.SRV: {
      if (len < 7) throw new WireError("short SRV rdata");
      const [target, after] = readName(buf, start + 6);
      if (after !== end) throw new WireError("SRV rdata length mismatch");
      return {
        priority: u16(buf, start),
        weight: u16(buf, start + 2),
        port: u16(buf, start + 4),
        target,
      } satisfies SRVData;
    }
    case Type.SOA: {
      const [mname, o1] = readName(buf, start);
      const [rname, o2] = readName(buf, o1);
      if (o2 + 20 !== end) throw new WireError("SOA rdata length mismatch");
      return {
        mname,
        rname,
        serial: u32(buf, o2),
        refresh: u32(buf, o2 + 4),
        retry: u32(buf, o2 + 8),
        expire: u32(buf, o2 + 12),
        minimum: u32(buf, o2 + 16),
      } satisfies SOAData;
    }
    case Type.TXT:
      // Text that is not UTF-8 stays raw bytes, so a forwarded record passes through intact.
      return readCharacterStrings(buf, start, end) ?? buf.slice(start, end);
    default: {
      // Types idetcd does not model stay raw; where a sender may have compressed
      // names inside (RFC 3597 section 4), those are expanded so the bytes stand alone.
      const layout = NAME_LAYOUTS[type];
      if (!layout) return buf.slice(start, end);
      const parts: Uint8Array[] = [];
      let o = start;
      for (const field of layout) {
        if (field === "n") {
          const [name, after] = readName(buf, o);
          parts.push(nameToWire(name));
          o = after;
          continue;
        }
        const size = field === "2" ? 2 : 1 + (buf[o] ?? 0);
        if (o + size > end) throw new WireError("rdata shorter than its type's fields");
        parts.push(buf.slice(o, o + size));
        o += size;
      }
      if (o !== end) throw new WireError("name rdata length mismatch");
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    }
  }
}

function readOPT(buf: Uint8Array, cls: number, ttl: number, start: number, len: number): OPTData {
  const options: { code: number; data: Uint8Array }[] = [];
  let o = start;
  const end = start + len;
  while (o < end) {
    if (o + 4 > end) throw new WireError("truncated EDNS0 option");
    const code = u16(buf, o);
    const olen = u16(buf, o + 2);
    if (o + 4 + olen > end) throw new WireError("EDNS0 option overflows rdata");
    options.push({ code, data: buf.slice(o + 4, o + 4 + olen) });
    o += 4 + olen;
  }
  return {
    udpSize: cls,
    extendedRcode: (ttl >>> 24) & 0xff,
    version: (ttl >>> 16) & 0xff,
    dnssecOk: (ttl & 0x8000) !== 0,
    options,
  };
}

function readRR(buf: Uint8Array, offset: number): [RR, number] {
  const [name, o] = readName(buf, offset);
  if (o + 10 > buf.length) throw new WireError("record header overflows message");
  const type = u16(buf, o);
  const cls = u16(buf, o + 2);
  const ttl = u32(buf, o + 4);
  const len = u16(buf, o + 8);
  const start = o + 10;
  if (start + len > buf.length) throw new WireError("rdata overflows message");
  const data = type === Type.OPT
    ? readOPT(buf, cls, ttl, start, len)
    : readRData(buf, type, start, len);
  return [{ name, type, class: cls, ttl, data }, start + len];
}

/** Decodes a whole message; throws WireError when it is malformed. */
export function decodeMessage(buf: Uint8Array): Message {
  if (buf.length < 12) throw new WireError("message shorter than a header");
  const header = readHeader(buf);
  const counts = [u16(buf, 4), u16(buf, 6), u16(buf, 8), u16(buf, 10)];
  let o = 12;
  const question: Question[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const [name, after] = readName(buf, o);
    if (after + 4 > buf.length) throw new WireError("question overflows message");
    question.push({ name, type: u16(buf, after), class: u16(buf, after + 2) });
    o = after + 4;
  }
  const sections: RR[][] = [[], [], []];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]; i++) {
      const [rr, after] = readRR(buf, o);
      sections[s].push(rr);
      o = after;
    }
  }
  const opt = sections[2].find((r) => r.type === Type.OPT);
  if (opt) header.rcode |= (opt.data as OPTData).extendedRcode << 4;
  return {
    ...header,
    question,
    answer: sections[0],
    authority: sections[1],
    additional: sections[2],
  };
}

/** A query as read from the wire: enough to route and answer it. */
export interface ParsedQuery {
  /** The query's header. */
  header: Header;
  /** Its only question. */
  question: Question;
  /** Its OPT record's data, or null without EDNS0. */
  edns: OPTData | null;
  /**
   * FORMERR: more than one OPT record, OPT not owned by the root, or a TSIG
   * record that is not the last one (RFC 8945 section 5.1).
   */
  badOpt: boolean;
  /** The query's TSIG record (the last additional record), or null. */
  tsig: RR | null;
}

/** Why a packet could not be taken as a query. */
export type QueryProblem =
  /** Not worth an answer (too short for a header, or a response). */
  | { kind: "drop" }
  /** Answer with this rcode; the header was readable. */
  | { kind: "reject"; rcode: number; header: Header; question?: Question; edns: OPTData | null };

/**
 * Reads a query the way miekg/dns's default accept function judges it:
 * responses and runts are dropped; a bad question count or a malformed body
 * gets FORMERR; an opcode other than QUERY (or NOTIFY) gets NOTIMP.
 */
export function parseQuery(buf: Uint8Array): ParsedQuery | QueryProblem {
  if (buf.length < 12) return { kind: "drop" };
  const header = readHeader(buf);
  if (header.response) return { kind: "drop" };
  const qd = u16(buf, 4), an = u16(buf, 6), ns = u16(buf, 8), ar = u16(buf, 10);
  if (header.opcode !== Opcode.Query && header.opcode !== Opcode.Notify) {
    return { kind: "reject", rcode: Rcode.NotImplemented, header, edns: null };
  }
  if (qd !== 1 || an > 1 || ns > 1 || ar > 2) {
    return { kind: "reject", rcode: Rcode.FormatError, header, edns: null };
  }
  let question: Question | undefined;
  try {
    const [name, after] = readName(buf, 12);
    if (after + 4 > buf.length) throw new WireError("question overflows message");
    question = { name, type: u16(buf, after), class: u16(buf, after + 2) };
    let o = after + 4;
    for (let i = 0; i < an + ns; i++) o = readRR(buf, o)[1];
    let edns: OPTData | null = null;
    let badOpt = false;
    let tsig: RR | null = null;
    for (let i = 0; i < ar; i++) {
      const [rr, next] = readRR(buf, o);
      o = next;
      if (rr.type === Type.OPT) {
        if (edns || rr.name !== ".") badOpt = true;
        edns = rr.data as OPTData;
      } else if (rr.type === Type.TSIG) {
        if (i !== ar - 1) badOpt = true;
        tsig = rr;
      }
    }
    return { header, question, edns, badOpt, tsig };
  } catch {
    return { kind: "reject", rcode: Rcode.FormatError, header, question, edns: null };
  }
}

// ---------------------------------------------------------------- encoding

/** Parses presentation-format labels, honouring `\.` and `\DDD` escapes. */
function nameToLabels(name: string): Uint8Array[] {
  if (name === "." || name === "") return [];
  const labels: Uint8Array[] = [];
  if (!name.includes("\\")) {
    const body = name.endsWith(".") ? name.slice(0, -1) : name;
    for (const part of body.split(".")) labels.push(encodeLabel(part));
    return labels;
  }
  let bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c) {
      const d = name.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(d)) {
        bytes.push(Number(d) & 0xff);
        i += 3;
      } else if (i + 1 < name.length) {
        bytes.push(name.charCodeAt(++i) & 0xff);
      }
    } else if (c === 0x2e) {
      labels.push(checkLabel(Uint8Array.from(bytes)));
      bytes = [];
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      // Non-ASCII text goes out as its UTF-8 bytes, as Go's string bytes would;
      // a character outside the BMP is two UTF-16 units, encoded together.
      const cp = name.codePointAt(i)!;
      if (cp > 0xffff) i++;
      bytes.push(...utf8.encode(String.fromCodePoint(cp)));
    }
  }
  if (bytes.length) labels.push(checkLabel(Uint8Array.from(bytes)));
  return labels;
}

const utf8 = new TextEncoder();

function encodeLabel(text: string): Uint8Array {
  return checkLabel(utf8.encode(text));
}

function checkLabel(label: Uint8Array): Uint8Array {
  if (label.length === 0) throw new WireError("empty label");
  if (label.length > 63) throw new WireError("label longer than 63 bytes");
  return label;
}

/** Incremental message writer with RFC 1035 name compression. */
class Writer {
  buf: Uint8Array;
  view: DataView;
  pos = 0;
  /** Name suffix -> offset of its first occurrence (case-sensitive, as miekg/dns, so owners keep their case). */
  compression = new Map<string, number>();

  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  ensure(n: number) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number) {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number) {
    this.ensure(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }

  u32(v: number) {
    this.ensure(4);
    this.view.setUint32(this.pos, v >>> 0);
    this.pos += 4;
  }

  bytes(b: Uint8Array) {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  name(name: string, compress: boolean) {
    if (this.#asciiName(name, compress)) return;
    const labels = nameToLabels(name);
    let total = 1;
    for (const l of labels) total += l.length + 1;
    if (total > 255) throw new WireError(`name longer than 255 bytes: ${name.slice(0, 40)}...`);
    const suffixes = nameSuffixes(name, labels.length);
    for (let i = 0; i < labels.length; i++) {
      const key = suffixes[i];
      const at = this.compression.get(key);
      if (at === undefined) {
        if (this.pos < 0x4000) this.compression.set(key, this.pos);
      } else if (compress) {
        this.u16(0xc000 | at);
        return;
      }
      this.u8(labels[i].length);
      this.bytes(labels[i]);
    }
    this.u8(0);
  }

  /**
   * The common case written straight into the buffer: a printable-ASCII name
   * without escapes. Returns false (having written nothing) for anything else.
   */
  #asciiName(name: string, compress: boolean): boolean {
    const n = name.length;
    const end = name.charCodeAt(n - 1) === 0x2e ? n - 1 : n;
    if (end > 253) return false;
    for (let i = 0; i < end; i++) {
      const c = name.charCodeAt(i);
      if (c <= 0x20 || c >= 0x7f || c === 0x5c) return false;
    }
    // Label lengths first, so a bad name is refused before any byte is written.
    for (let start = 0; start < end;) {
      let dot = name.indexOf(".", start);
      if (dot < 0 || dot > end) dot = end;
      const len = dot - start;
      if (len === 0 || len > 63) return false;
      start = dot + 1;
    }
    this.ensure(end + 2);
    const fq = end === n ? name + "." : name;
    for (let start = 0; start < end;) {
      // Every name written is a target for later pointers, even one that may
      // not be compressed itself (an SRV target), as miekg/dns records them:
      // otherwise fewer records fit where CoreDNS's fit.
      const suffix = start === 0 ? fq : fq.slice(start);
      const at = this.compression.get(suffix);
      if (at === undefined) {
        if (this.pos < 0x4000) this.compression.set(suffix, this.pos);
      } else if (compress) {
        this.u16(0xc000 | at);
        return true;
      }
      let dot = name.indexOf(".", start);
      if (dot < 0 || dot > end) dot = end;
      const buf = this.buf;
      let pos = this.pos;
      buf[pos++] = dot - start;
      for (let i = start; i < dot; i++) buf[pos++] = name.charCodeAt(i);
      this.pos = pos;
      start = dot + 1;
    }
    this.u8(0);
    return true;
  }
}

/** The suffixes of a name, one per label position ("a.b." -> ["a.b.", "b."]). */
function nameSuffixes(name: string, count: number): string[] {
  const lower = name.endsWith(".") ? name : name + ".";
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < count; i++) {
    out.push(lower.slice(start));
    // Advance past the next unescaped dot.
    let j = start;
    while (j < lower.length) {
      if (lower[j] === "\\") j += 2;
      else if (lower[j] === ".") break;
      else j++;
    }
    start = j + 1;
  }
  return out;
}

function writeIPv4(w: Writer, address: string) {
  const bytes = parseIPv4(address);
  if (!bytes) throw new WireError(`bad IPv4 address ${address}`);
  for (const b of bytes) w.u8(b);
}

function writeIPv6(w: Writer, address: string) {
  const bytes = parseIPv6(address);
  if (!bytes) throw new WireError(`bad IPv6 address ${address}`);
  for (const b of bytes) w.u8(b);
}

function writeRData(w: Writer, rr: RR) {
  const d = rr.data;
  if (d instanceof Uint8Array) {
    w.bytes(d);
    return;
  }
  switch (rr.type) {
    case Type.A:
      writeIPv4(w, d as string);
      return;
    case Type.AAAA:
      writeIPv6(w, d as string);
      return;
    case Type.CNAME:
    case Type.NS:
    case Type.PTR:
      w.name(d as string, true);
      return;
    case Type.MX: {
      const mx = d as MXData;
      w.u16(mx.preference);
      w.name(mx.exchange, true);
      return;
    }
    case Type.SRV: {
      const srv = d as SRVData;
      w.u16(srv.priority);
      w.u16(srv.weight);
      w.u16(srv.port);
      // RFC 2782: SRV targets are not compressed.
      w.name(srv.target, false);
      return;
    }
    case Type.SOA: {
      const soa = d as SOAData;
      w.name(soa.mname, true);
      w.name(soa.rname, true);
      w.u32(soa.serial);
      w.u32(soa.refresh);
      w.u32(soa.retry);
      w.u32(soa.expire);
      w.u32(soa.minimum);
      return;
    }
    case Type.TXT: {
      for (const s of d as string[]) {
        const bytes = utf8.encode(s);
        if (bytes.length > 255) throw new WireError("TXT string longer than 255 bytes");
        w.u8(bytes.length);
        w.bytes(bytes);
      }
      return;
    }
    default:
      throw new WireError(`cannot encode rdata of type ${rr.type}`);
  }
}

function writeRR(w: Writer, rr: RR, extendedRcode: number) {
  if (rr.type === Type.OPT) {
    const opt = rr.data as OPTData;
    w.u8(0);
    w.u16(Type.OPT);
    w.u16(opt.udpSize);
    w.u8(extendedRcode);
    w.u8(opt.version);
    w.u16(opt.dnssecOk ? 0x8000 : 0);
    let len = 0;
    for (const o of opt.options) len += 4 + o.data.length;
    w.u16(len);
    for (const o of opt.options) {
      w.u16(o.code);
      w.u16(o.data.length);
      w.bytes(o.data);
    }
    return;
  }
  // A TSIG key name is written whole: verifiers hash it in canonical form.
  w.name(rr.name, rr.type !== Type.TSIG);
  w.u16(rr.type);
  w.u16(rr.class);
  w.u32(rr.ttl);
  const lenAt = w.pos;
  w.u16(0);
  writeRData(w, rr);
  w.view.setUint16(lenAt, w.pos - lenAt - 2);
}

/**
 * The one work buffer of {@link encodeMessage}, kept per process (per
 * isolate: a Worker has its own module instance) for speed: a reply is
 * encoded without allocating a buffer or a compression map each time.
 *
 * Safe to share because JavaScript runs one call at a time and an encode
 * is synchronous from start to end: it is never held across an await, every
 * encode starts by clearing it (position and compression table), and what
 * leaves is a copy (`slice`), never a view of it. An encode that throws
 * leaves it replaced, so not even a half-written state outlives the call.
 * lib/dns/wire_test.ts checks all of that.
 */
let shared = new Writer(4096);

/**
 * Encodes `msg`. With `maxSize`, records that do not fit are left out, in
 * the order miekg/dns's Truncate uses (answer, then authority, then
 * additional, keeping the OPT record), and TC is set when anything was left
 * out. The result is a fresh copy; the work buffer is reused across calls.
 */
export function encodeMessage(msg: Message, maxSize = MAX_MESSAGE_SIZE): Uint8Array {
  const w = shared;
  try {
    return encodeWith(w, msg, maxSize);
  } catch (err) {
    // Leave a clean writer behind for the next call.
    shared = new Writer(4096);
    throw err;
  }
}

function encodeWith(w: Writer, msg: Message, maxSize: number): Uint8Array {
  w.pos = 0;
  w.compression.clear();
  let opt: RR | undefined;
  let tsig: RR | undefined;
  for (const r of msg.additional) {
    if (r.type === Type.OPT) opt ??= r;
    else if (r.type === Type.TSIG) tsig ??= r;
  }
  const extra = opt || tsig
    ? msg.additional.filter((r) => r !== opt && r !== tsig)
    : msg.additional;
  const extendedRcode = msg.rcode >> 4;
  if (extendedRcode && !opt) throw new WireError("extended rcode needs an OPT record");
  let optSize = 0;
  if (opt) {
    optSize = 11;
    for (const o of (opt.data as OPTData).options) optSize += 4 + o.data.length;
  }
  if (tsig) optSize += nameToWire(tsig.name).length + 10 + (tsig.data as Uint8Array).length;
  const limit = Math.max(maxSize, 12) - optSize;

  w.pos = 12;
  for (const q of msg.question) {
    w.name(q.name, true);
    w.u16(q.type);
    w.u16(q.class);
  }
  let truncated = msg.truncated;
  const counts = [0, 0, 0];
  const sections = [msg.answer, msg.authority, extra];
  outer: for (let s = 0; s < 3; s++) {
    for (const rr of sections[s]) {
      const before = w.pos;
      const savedCompression = w.compression.size;
      writeRR(w, rr, 0);
      if (w.pos > limit) {
        w.pos = before;
        // Forget compression targets that pointed into the dropped record.
        if (w.compression.size !== savedCompression) {
          for (const [k, at] of w.compression) if (at >= before) w.compression.delete(k);
        }
        truncated = true;
        break outer;
      }
      counts[s]++;
    }
  }
  if (opt) {
    writeRR(w, opt, extendedRcode);
    counts[2]++;
  }
  // RFC 8945 section 5.1: TSIG is always the last record. Only unsigned error
  // replies carry one (a few dozen bytes), so it is never truncated away.
  if (tsig) {
    writeRR(w, tsig, 0);
    counts[2]++;
  }
  const flags = (msg.response ? 0x8000 : 0) | ((msg.opcode & 0xf) << 11) |
    (msg.authoritative ? 0x0400 : 0) | (truncated ? 0x0200 : 0) |
    (msg.recursionDesired ? 0x0100 : 0) | (msg.recursionAvailable ? 0x0080 : 0) |
    (msg.zero ? 0x0040 : 0) | (msg.authenticData ? 0x0020 : 0) |
    (msg.checkingDisabled ? 0x0010 : 0) | (msg.rcode & 0xf);
  w.view.setUint16(0, msg.id);
  w.view.setUint16(2, flags);
  w.view.setUint16(4, msg.question.length);
  w.view.setUint16(6, counts[0]);
  w.view.setUint16(8, counts[1]);
  w.view.setUint16(10, counts[2]);
  return w.buf.slice(0, w.pos);
}

/** A query message for `name`/`type`, as a stub resolver sends it. */
export function encodeQuery(
  id: number,
  name: string,
  type: number,
  options: { rd?: boolean; udpSize?: number; dnssecOk?: boolean; cls?: number } = {},
): Uint8Array {
  const additional: RR[] = options.udpSize
    ? [{
      name: ".",
      type: Type.OPT,
      class: options.udpSize,
      ttl: 0,
      data: {
        udpSize: options.udpSize,
        extendedRcode: 0,
        version: 0,
        dnssecOk: options.dnssecOk ?? false,
        options: [],
      },
    }]
    : [];
  return encodeMessage({
    id,
    response: false,
    opcode: Opcode.Query,
    authoritative: false,
    truncated: false,
    recursionDesired: options.rd ?? true,
    recursionAvailable: false,
    zero: false,
    authenticData: false,
    checkingDisabled: false,
    rcode: 0,
    question: [{ name, type, class: options.cls ?? Class.INET }],
    answer: [],
    authority: [],
    additional,
  });
}
