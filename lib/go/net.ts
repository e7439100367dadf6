/**
 * Go's net.SplitHostPort and net.JoinHostPort, with Go's error texts, which
 * CoreDNS's plugins print unchanged in their setup errors.
 *
 * @module
 */

/** The parts of a `host:port` string; `host` has no brackets. */
export interface HostPort {
  /** "" for `:53`; an IPv6 host without its brackets. */
  host: string;
  /** The text after the last colon, unchecked (Go accepts service names). */
  port: string;
}

/**
 * Go's net.SplitHostPort: `host:port`, `[host]:port` or `[host%zone]:port`.
 * Throws Error with Go's text, e.g. `address x: missing port in address`.
 */
export function splitHostPort(hostport: string): HostPort {
  const fail = (why: string) => new Error(`address ${hostport}: ${why}`);
  const i = hostport.lastIndexOf(":");
  if (i < 0) throw fail("missing port in address");
  let host: string;
  let j = 0;
  let k = 0;
  if (hostport[0] === "[") {
    const end = hostport.indexOf("]");
    if (end < 0) throw fail("missing ']' in address");
    if (end + 1 === hostport.length) throw fail("missing port in address");
    if (end + 1 !== i) {
      throw fail(
        hostport[end + 1] === ":" ? "too many colons in address" : "missing port in address",
      );
    }
    host = hostport.slice(1, end);
    j = 1;
    k = end + 1;
  } else {
    host = hostport.slice(0, i);
    if (host.includes(":")) throw fail("too many colons in address");
  }
  if (hostport.slice(j).includes("[")) throw fail("unexpected '[' in address");
  if (hostport.slice(k).includes("]")) throw fail("unexpected ']' in address");
  return { host, port: hostport.slice(i + 1) };
}

/** Go's net.JoinHostPort: "1.2.3.4:53", "[::1]:53" (a host with a colon gets brackets), ":53". */
export function joinHostPort(host: string, port: string | number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
