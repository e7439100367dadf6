/**
 * Test helpers for the etcd plugin: an in-memory {@link KeyValueSource} and
 * SkyDNS record writers, so lookups can be tested as the pure functions they
 * are. Not used by the server.
 *
 * @module
 */

import { lowerName } from "../../dns/name.ts";
import type { MXData, RR, SOAData, SRVData } from "../../dns/types.ts";
import { typeToString } from "../../dns/types.ts";
import type { KeyValue, KeyValueSource } from "../../etcd/types.ts";
import { pathWithWildcard } from "./path.ts";

const encoder = new TextEncoder();

/** Compares keys by their UTF-8 bytes, as etcd orders them. */
function compareKeys(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** The fields of msg.Service, for writing test records (zero values are omitted as Go does). */
export interface ServiceFields {
  /** An IP address (A/AAAA record) or a name (CNAME, SRV/MX target). */
  host?: string;
  /** SRV port. */
  port?: number;
  /** SRV/MX priority; 0 (omitted) becomes 10 when read. */
  priority?: number;
  /** SRV weight. */
  weight?: number;
  /** TXT content; with no IP host it makes the record a TXT. */
  text?: string;
  /** Also answer MX queries. */
  mail?: boolean;
  /** The record's own TTL; 0 (omitted) lets the lease or the default decide. */
  ttl?: number;
  /** Leftmost labels dropped from the SRV/MX/NS target. */
  targetstrip?: number;
  /** Only services of the same group answer together. */
  group?: string;
}

/** json.Marshal of a msg.Service: fields in struct order, zero values left out. */
export function serviceJSON(fields: ServiceFields): string {
  const ordered: Record<string, unknown> = {};
  for (
    const name of [
      "host",
      "port",
      "priority",
      "weight",
      "text",
      "mail",
      "ttl",
      "targetstrip",
      "group",
    ] as const
  ) {
    const value = fields[name];
    if (value !== undefined && value !== "" && value !== 0 && value !== false) {
      ordered[name] = value;
    }
  }
  return JSON.stringify(ordered);
}

/** A sorted in-memory key space with settable lease TTLs. */
export class MemorySource implements KeyValueSource {
  #entries: KeyValue[] = [];
  #leases = new Map<string, number>();
  #revision = 0;
  /** Bumped on every write, as a mirror's is, so answers cached per generation go stale. */
  generation = 0;

  /** `prefix` is the etcd plugin's `path`, used by the name-keyed writers. */
  constructor(readonly prefix = "skydns") {}

  /** Writes a raw value. */
  put(key: string, value: string, lease = "0"): KeyValue {
    const old = this.get(key);
    const kv: KeyValue = {
      key,
      value,
      lease,
      createRevision: old?.createRevision ?? this.#revision + 1,
      modRevision: ++this.#revision,
    };
    this.#entries = this.#entries.filter((e) => e.key !== key);
    this.#entries.push(kv);
    this.#entries.sort((a, b) => compareKeys(a.key, b.key));
    this.generation++;
    return kv;
  }

  /** Writes a service at the key of `name` (as CoreDNS's tests do: PathWithWildcard of the name). */
  set(name: string, fields: ServiceFields, lease = "0"): KeyValue {
    return this.put(this.keyOf(name), serviceJSON(fields), lease);
  }

  /** The key a DNS name maps to under this source's prefix. */
  keyOf(name: string): string {
    return pathWithWildcard(lowerName(name), this.prefix).path;
  }

  /** Removes a key. */
  delete(key: string): void {
    this.#entries = this.#entries.filter((e) => e.key !== key);
    this.generation++;
  }

  /** Sets the seconds left on a lease (undefined: unknown). */
  setLease(lease: string, remaining: number | undefined): void {
    if (remaining === undefined) this.#leases.delete(lease);
    else this.#leases.set(lease, remaining);
  }

  range(prefix: string): readonly KeyValue[] {
    return this.#entries.filter((e) => e.key.startsWith(prefix));
  }

  get(key: string): KeyValue | undefined {
    return this.#entries.find((e) => e.key === key);
  }

  leaseRemaining(lease: string): number | undefined {
    return this.#leases.get(lease);
  }
}

/** A record in CoreDNS test notation: `name ttl IN TYPE rdata`. */
export function show(record: RR): string {
  const d = record.data;
  let rdata: string;
  switch (typeToString(record.type)) {
    case "SRV": {
      const s = d as SRVData;
      rdata = `${s.priority} ${s.weight} ${s.port} ${s.target}`;
      break;
    }
    case "MX": {
      const m = d as MXData;
      rdata = `${m.preference} ${m.exchange}`;
      break;
    }
    case "SOA": {
      const s = d as SOAData;
      rdata = `${s.mname} ${s.rname} ${s.serial} ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`;
      break;
    }
    case "TXT":
      rdata = (d as string[]).map((s) => JSON.stringify(s)).join(" ");
      break;
    default:
      rdata = String(d);
  }
  return `${record.name} ${record.ttl} IN ${typeToString(record.type)} ${rdata}`;
}
