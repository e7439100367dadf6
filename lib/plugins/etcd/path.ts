/**
 * Name <-> etcd key mapping of the SkyDNS layout (CoreDNS `plugin/etcd/msg/path.go`).
 *
 * `service.staging.skydns.local.` lives at `/skydns/local/skydns/staging/service`.
 * Keys are built with Go's `path.Join`/`path.Clean` (lib/go/path.ts) and
 * miekg/dns label splitting (lib/dns/name.ts), quirks included, because
 * they must match the keys other SkyDNS writers put in etcd byte for byte.
 *
 * @module
 */

import { joinLabels, splitLabels } from "../../dns/name.ts";
import { clean, join } from "../../go/path.ts";

/** Whether a label can be appended to a clean path without changing what Clean does. */
function isPlainSegment(label: string): boolean {
  return label !== "" && label !== "." && label !== ".." && !label.includes("/");
}

/**
 * `Clean("/" + prefix + "/")`: the root every key of this prefix starts
 * with; a plain one-segment prefix ("skydns", the usual) needs no Clean.
 */
export function prefixRoot(prefix: string): string {
  return isPlainSegment(prefix) ? "/" + prefix : clean("/" + prefix + "/");
}

/** `path.Join("/"+prefix+"/", labels...)` for labels already in key order. */
function joinUnderPrefix(prefix: string, keyOrderLabels: readonly string[]): string {
  const root = prefixRoot(prefix);
  if (keyOrderLabels.every(isPlainSegment)) {
    if (keyOrderLabels.length === 0) return root;
    return (root === "/" ? "/" : root + "/") + keyOrderLabels.join("/");
  }
  return join("/" + prefix + "/", ...keyOrderLabels);
}

/**
 * msg.Path: the etcd key of `name` (which callers pass lower-cased): labels
 * reversed under the prefix. `service.staging.skydns.local.` with prefix
 * `skydns` gives `/skydns/local/skydns/staging/service`; the root gives `/skydns`.
 */
export function etcdPath(name: string, prefix: string): string {
  return joinUnderPrefix(prefix, splitLabels(name).reverse());
}

/**
 * msg.PathWithWildcard: like {@link etcdPath}, but cut just before the first
 * `*` or `any` label met in key order (TLD first); `wildcard` tells whether
 * that happened.
 */
export function pathWithWildcard(
  name: string,
  prefix: string,
): { path: string; wildcard: boolean } {
  const labels = splitLabels(name).reverse();
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === "*" || labels[i] === "any") {
      return { path: joinUnderPrefix(prefix, labels.slice(0, i)), wildcard: true };
    }
  }
  return { path: joinUnderPrefix(prefix, labels), wildcard: false };
}

/**
 * How many bytes of keys and names a {@link KeyNames} keeps (UTF-16, 2 per
 * code unit) before it starts over: bounded by bytes, not entries, since a
 * key can be long, and small, since what it keeps also holds on to the keys
 * of entries deleted from the copy.
 */
export const KEY_NAMES_MAX_BYTES: number = 2 * 1024 * 1024;

/**
 * {@link domainFromKey} of keys, remembered by one plugin instance: SRV, MX
 * and NS answers for IP hosts name every key they read, and a remembered
 * name costs about a seventieth of msg.Domain's splitting and joining.
 */
export class KeyNames {
  readonly #names = new Map<string, string>();
  #bytes = 0;
  readonly #maxBytes: number;

  /** An empty memory that starts over past `maxBytes`. */
  constructor(maxBytes: number = KEY_NAMES_MAX_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** msg.Domain of `key` (throws {@link InternalPanic} for a bare prefix, as domainFromKey). */
  of(key: string): string {
    let name = this.#names.get(key);
    if (name === undefined) {
      name = domainFromKey(key);
      const bytes = 2 * (key.length + name.length) + 64; // + a Map entry's own cost
      if (this.#bytes + bytes > this.#maxBytes) {
        this.#names.clear();
        this.#bytes = 0;
      }
      this.#names.set(key, name);
      this.#bytes += bytes;
    }
    return name;
  }

  /** How many names it holds now. */
  get size(): number {
    return this.#names.size;
  }
}

/** Raised where CoreDNS would panic (and its server would answer a bare SERVFAIL). */
export class InternalPanic extends Error {
  /** `message` is what Go's panic would say; it becomes the SERVFAIL's error (for `errors`). */
  constructor(message: string) {
    super(message);
    this.name = "InternalPanic";
  }
}

/**
 * msg.Domain: the name a key stands for, assuming a one-component prefix
 * (`/skydns/local/cluster/staging/service` -> `service.staging.cluster.local.`).
 * With a deeper prefix (`/skydns/ka2/local/x`) it keeps CoreDNS's wrong answer
 * (`x.local.ka2.`).
 */
export function domainFromKey(key: string): string {
  let parts = key.split("/");
  if (parts[parts.length - 1] === "") parts = parts.slice(0, -1);
  // Elements 1..n reversed; then drop the first (empty) and the last (the prefix).
  const reversed = parts.slice(1).reverse();
  // The prefix alone leaves no label: dnsutil.Join panics, and the query gets a SERVFAIL.
  if (reversed.length < 2) throw new InternalPanic("runtime error: index out of range [-1]");
  return joinLabels(reversed.slice(0, reversed.length - 1));
}
