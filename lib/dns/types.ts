/**
 * DNS constants and the resource-record model used everywhere in idetcd.
 *
 * Names follow miekg/dns where it has one (TypeA, RcodeNameError, ...), in a
 * TypeScript shape: `Type.A`, `Rcode.NameError`.
 *
 * @module
 */

/** Resource record types idetcd knows by name. */
export const Type = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  HINFO: 13,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DS: 43,
  OPT: 41,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  HTTPS: 65,
  SVCB: 64,
  TSIG: 250,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
  CAA: 257,
} as const;

/** Classes. */
export const Class = { INET: 1, CHAOS: 3, NONE: 254, ANY: 255 } as const;

/** Response codes (the 4-bit header part; BADVERS needs the OPT extension). */
export const Rcode = {
  Success: 0,
  FormatError: 1,
  ServerFailure: 2,
  NameError: 3,
  NotImplemented: 4,
  Refused: 5,
  NotAuth: 9,
  BadVers: 16,
} as const;

/** TSIG error codes (RFC 8945 section 3): carried in the TSIG record, not the header. */
export const TsigError = { BadSig: 16, BadKey: 17, BadTime: 18, BadTrunc: 22 } as const;

/** EDNS0 option codes idetcd reads or writes. */
export const EdnsOption = {
  /** RFC 5001. */
  NSID: 3,
  /** RFC 7314. */
  Expire: 9,
  /** RFC 7873. */
  Cookie: 10,
  /** RFC 7828. */
  TcpKeepalive: 11,
  /** RFC 7830. */
  Padding: 12,
  /** RFC 8914: Extended DNS Errors. */
  ExtendedError: 15,
} as const;

/** Opcodes. */
export const Opcode = { Query: 0, IQuery: 1, Status: 2, Notify: 4, Update: 5 } as const;

const typeNames = new Map<number, string>(
  Object.entries(Type).map(([name, code]) => [code, name]),
);

/** "A" for 1, "TYPE65280" for types without a mnemonic (RFC 3597). */
export function typeToString(type: number): string {
  return typeNames.get(type) ?? `TYPE${type}`;
}

const rcodeNames = new Map<number, string>([
  [0, "NOERROR"],
  [1, "FORMERR"],
  [2, "SERVFAIL"],
  [3, "NXDOMAIN"],
  [4, "NOTIMP"],
  [5, "REFUSED"],
  [6, "YXDOMAIN"],
  [7, "YXRRSET"],
  [8, "NXRRSET"],
  [9, "NOTAUTH"],
  [10, "NOTZONE"],
  [16, "BADVERS"],
]);

/** "NXDOMAIN" for 3, as CoreDNS logs and labels rcodes. */
export function rcodeToString(rcode: number): string {
  return rcodeNames.get(rcode) ?? `RCODE${rcode}`;
}

/** "IN" for 1, "CH" for 3, "CLASS7" otherwise. */
export function classToString(cls: number): string {
  switch (cls) {
    case 1:
      return "IN";
    case 3:
      return "CH";
    case 4:
      return "HS";
    case 254:
      return "NONE";
    case 255:
      return "ANY";
    default:
      return `CLASS${cls}`;
  }
}

/** SRV record data. */
export interface SRVData {
  /** Lower values are tried first (RFC 2782). */
  priority: number;
  /** Relative share among records of equal priority. */
  weight: number;
  /** The service's port. */
  port: number;
  /** The host that offers the service (fully qualified). */
  target: string;
}

/** MX record data. */
export interface MXData {
  /** Lower values are preferred. */
  preference: number;
  /** The mail exchanger's name (fully qualified). */
  exchange: string;
}

/** SOA record data. */
export interface SOAData {
  /** The primary name server of the zone. */
  mname: string;
  /** The responsible person's mailbox, as a name (`hostmaster.example.org.`). */
  rname: string;
  /** The zone's version number. */
  serial: number;
  /** Seconds between secondary refreshes. */
  refresh: number;
  /** Seconds before a failed refresh is retried. */
  retry: number;
  /** Seconds after which a secondary stops answering without a refresh. */
  expire: number;
  /** The negative-caching TTL (RFC 2308), in seconds. */
  minimum: number;
}

/** OPT pseudo-record data (EDNS0), carried in the additional section. */
export interface OPTData {
  /** The largest UDP payload the sender can take. */
  udpSize: number;
  /** The upper 8 bits of the extended rcode. */
  extendedRcode: number;
  /** The EDNS version (0). */
  version: number;
  /** The DO bit. */
  dnssecOk: boolean;
  /** Raw options (code, bytes), kept as received. */
  options: { code: number; data: Uint8Array }[];
}

/**
 * Record data by type:
 * - A, AAAA: the address as text (`"10.0.0.1"`, `"2001:db8::1"`);
 * - CNAME, NS, PTR: the target name (fully qualified);
 * - TXT: the character-strings;
 * - MX, SRV, SOA, OPT: their structures;
 * - anything else: the raw RDATA bytes (RFC 3597), as received.
 */
export type RData = string | string[] | SRVData | MXData | SOAData | OPTData | Uint8Array;

/** One resource record. Names are fully qualified (trailing dot). */
export interface RR {
  /** The owner name. */
  name: string;
  /** The record type (Type.A, ...). */
  type: number;
  /** The class (1 for IN). */
  class: number;
  /** Seconds it may be cached. */
  ttl: number;
  /** The type's data (see {@link RData}). */
  data: RData;
}

/** A question. `name` keeps the case it was sent in; `qname` is lower-cased. */
export interface Question {
  /** The name asked for, in the case it was sent in. */
  name: string;
  /** The type asked for (Type.A, ...). */
  type: number;
  /** The class asked for (1 for IN). */
  class: number;
}
