/**
 * Name <-> etcd key mapping of the SkyDNS layout (CoreDNS `plugin/etcd/msg/path.go`).
 *
 * `service.staging.skydns.local.` lives at `/skydns/local/skydns/staging/service`.
 * The helpers reproduce Go's `path.Join`/`path.Clean` and miekg/dns label
 * splitting, quirks included, because the keys they produce must match the
 * keys other SkyDNS writers put in etcd byte for byte.
 *
 * @module
 */

import { joinLabels } from "../../dns/name.ts";

/**
 * miekg/dns `NextLabel`: the offset just after the next unescaped dot at or
 * after `offset`, and whether the end of the name was reached instead.
 */
export function nextLabel(name: string, offset: number): [number, boolean] {
  if (name === "") return [0, true];
  let i = offset;
  for (; i < name.length - 1; i++) {
    if (name.charCodeAt(i) !== 0x2e) continue;
    let j = i - 1;
    while (j >= 0 && name.charCodeAt(j) === 0x5c) j--;
    // An odd number of backslashes before the dot escapes it.
    if ((j - i) % 2 === 0) continue;
    return [i + 1, false];
  }
  return [i + 1, true];
}

/** miekg/dns `IsFqdn`: ends in a dot that is not escaped. */
export function isFqdn(name: string): boolean {
  if (name === "" || name.charCodeAt(name.length - 1) !== 0x2e) return false;
  const body = name.slice(0, -1);
  if (body === "" || body.charCodeAt(body.length - 1) !== 0x5c) return true;
  let i = body.length - 1;
  while (i >= 0 && body.charCodeAt(i) === 0x5c) i--;
  return (body.length - i) % 2 !== 0;
}

/** miekg/dns `Fqdn`: appends the dot unless the name already ends in an unescaped one. */
export function goFqdn(name: string): string {
  return isFqdn(name) ? name : name + ".";
}

/** miekg/dns `SplitDomainName`: the labels, escapes kept; the root has none. */
export function splitDomainName(name: string): string[] {
  if (name === "" || name === ".") return [];
  if (!name.includes("\\")) {
    // Fast path: without escapes every dot separates labels.
    return (name.endsWith(".") ? name.slice(0, -1) : name).split(".");
  }
  const end = isFqdn(name) ? name.length - 1 : name.length;
  const starts = [0];
  let offset = 0;
  for (;;) {
    const [next, done] = nextLabel(name, offset);
    if (done) break;
    starts.push(next);
    offset = next;
  }
  const labels: string[] = [];
  for (let k = 1; k < starts.length; k++) labels.push(name.slice(starts[k - 1], starts[k] - 1));
  labels.push(name.slice(starts[starts.length - 1], end));
  return labels;
}

/** Go's `path.Clean`. */
export function cleanPath(path: string): string {
  if (path === "") return ".";
  const rooted = path.charCodeAt(0) === 0x2f;
  const n = path.length;
  let out = "";
  let r = 0;
  let dotdot = 0;
  if (rooted) {
    out = "/";
    r = 1;
    dotdot = 1;
  }
  while (r < n) {
    const c = path.charCodeAt(r);
    if (c === 0x2f) {
      r++;
    } else if (c === 0x2e && (r + 1 === n || path.charCodeAt(r + 1) === 0x2f)) {
      r++;
    } else if (
      c === 0x2e && path.charCodeAt(r + 1) === 0x2e &&
      (r + 2 === n || path.charCodeAt(r + 2) === 0x2f)
    ) {
      r += 2;
      if (out.length > dotdot) {
        let w = out.length - 1;
        while (w > dotdot && out.charCodeAt(w) !== 0x2f) w--;
        out = out.slice(0, w);
      } else if (!rooted) {
        if (out.length > 0) out += "/";
        out += "..";
        dotdot = out.length;
      }
    } else {
      if ((rooted && out.length !== 1) || (!rooted && out.length !== 0)) out += "/";
      let e = r;
      while (e < n && path.charCodeAt(e) !== 0x2f) e++;
      out += path.slice(r, e);
      r = e;
    }
  }
  return out === "" ? "." : out;
}

/** Go's `path.Join`: non-empty elements joined by "/", then cleaned. */
export function joinPath(elements: readonly string[]): string {
  let buf = "";
  for (const e of elements) {
    if (buf.length > 0 || e !== "") {
      if (buf.length > 0) buf += "/";
      buf += e;
    }
  }
  return buf === "" ? "" : cleanPath(buf);
}

const cleanedPrefixes = new Map<string, string>();

/** `Clean("/" + prefix + "/")`, memoised: the root every key of this prefix starts with. */
export function prefixRoot(prefix: string): string {
  let root = cleanedPrefixes.get(prefix);
  if (root === undefined) {
    root = cleanPath("/" + prefix + "/");
    if (cleanedPrefixes.size > 1000) cleanedPrefixes.clear();
    cleanedPrefixes.set(prefix, root);
  }
  return root;
}

/** Whether a label can be appended to a clean path without changing what Clean does. */
function isPlainSegment(label: string): boolean {
  return label !== "" && label !== "." && label !== ".." && !label.includes("/");
}

/** `path.Join("/"+prefix+"/", labels...)` for labels already in key order. */
function joinUnderPrefix(prefix: string, keyOrderLabels: readonly string[]): string {
  const root = prefixRoot(prefix);
  if (keyOrderLabels.every(isPlainSegment)) {
    if (keyOrderLabels.length === 0) return root;
    return (root === "/" ? "/" : root + "/") + keyOrderLabels.join("/");
  }
  return joinPath(["/" + prefix + "/", ...keyOrderLabels]);
}

/**
 * msg.Path: the etcd key of `name` (which callers pass lower-cased): labels
 * reversed under the prefix. `service.staging.skydns.local.` with prefix
 * `skydns` gives `/skydns/local/skydns/staging/service`; the root gives `/skydns`.
 */
export function etcdPath(name: string, prefix: string): string {
  return joinUnderPrefix(prefix, splitDomainName(name).reverse());
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
  const labels = splitDomainName(name).reverse();
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === "*" || labels[i] === "any") {
      return { path: joinUnderPrefix(prefix, labels.slice(0, i)), wildcard: true };
    }
  }
  return { path: joinUnderPrefix(prefix, labels), wildcard: false };
}

/** Raised where CoreDNS would panic (and its server would answer a bare SERVFAIL). */
export class InternalPanic extends Error {
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

/** miekg/dns `isDomainNameLabelSpecial`. */
function isLabelSpecial(b: number): boolean {
  return b === 0x2e || b === 0x20 || b === 0x27 || b === 0x40 || b === 0x3b || b === 0x28 ||
    b === 0x29 || b === 0x22 || b === 0x5c;
}

const nameEncoder = new TextEncoder();

/**
 * miekg/dns `Name.String()` (sprintName): the presentation form of a name
 * given as text, escaping specials (`\ `, `\;`...) and non-printable or
 * non-ASCII bytes (`\DDD`). CoreDNS keys lookups on this form.
 */
export function presentationName(name: string): string {
  let plain = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) continue;
    if (c < 0x21 || c > 0x7e || isLabelSpecial(c)) {
      plain = false;
      break;
    }
  }
  if (plain) return name;
  const b = nameEncoder.encode(name);
  const raw = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  // As in Go, nothing is copied until the first byte that needs escaping;
  // then the untouched prefix is taken verbatim.
  let out: string | undefined;
  let i = 0;
  while (i < b.length) {
    if (b[i] === 0x2e) {
      if (out !== undefined) out += ".";
      i++;
      continue;
    }
    let byte: number;
    let n: number;
    if (b[i] !== 0x5c) {
      byte = b[i];
      n = 1;
    } else if (b.length - i === 1) {
      n = 0;
      byte = 0;
    } else if (
      b.length - i >= 4 && b[i + 1] >= 0x30 && b[i + 1] <= 0x39 && b[i + 2] >= 0x30 &&
      b[i + 2] <= 0x39 && b[i + 3] >= 0x30 && b[i + 3] <= 0x39
    ) {
      byte = ((b[i + 1] - 0x30) * 100 + (b[i + 2] - 0x30) * 10 + (b[i + 3] - 0x30)) & 0xff;
      n = 4;
    } else {
      byte = b[i + 1];
      n = 2;
    }
    if (n === 0) {
      // A dangling escape is dropped.
      if (out === undefined) return raw(0, i);
      break;
    }
    if (isLabelSpecial(byte)) {
      out = (out ?? raw(0, i)) + "\\" + String.fromCharCode(byte);
    } else if (byte < 0x20 || byte > 0x7e) {
      out = (out ?? raw(0, i)) + "\\" + String(byte).padStart(3, "0");
    } else if (out !== undefined) {
      out += String.fromCharCode(byte);
    }
    i += n;
  }
  return out ?? name;
}
