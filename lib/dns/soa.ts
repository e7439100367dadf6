/**
 * The SOA record a backend makes up for its zone instead of reading one, as
 * CoreDNS's `plugin.SOA` (plugin/backend_lookup.go) does for etcd: both the
 * etcd and the idetcd plugin answer negative and apex queries with it.
 *
 * @module
 */

import { joinLabels } from "./name.ts";
import { Class, type RR, Type } from "./types.ts";

/** What a backend decides about its SOA; the rest is CoreDNS's fixed values. */
export interface SoaTiming {
  /** Unix time in seconds; the serial is its whole seconds (as uint32, CoreDNS's `time.Now().Unix()`). */
  nowSeconds: number;
  /** The record's TTL, seconds. */
  ttl: number;
  /** The SOA minimum (the negative-caching TTL, RFC 2308), seconds. */
  minimum: number;
}

/**
 * The zone's synthesized SOA: `ns.dns.<zone>` as primary name server,
 * `hostmaster.<zone>` as mailbox, refresh 7200, retry 1800, expire 86400.
 */
export function synthesizedSoa(zone: string, timing: SoaTiming): RR {
  return {
    name: zone,
    type: Type.SOA,
    class: Class.INET,
    ttl: timing.ttl,
    data: {
      mname: joinLabels(["ns.dns", zone]),
      rname: joinLabels(["hostmaster", zone]),
      serial: Math.floor(timing.nowSeconds) >>> 0,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: timing.minimum,
    },
  };
}
