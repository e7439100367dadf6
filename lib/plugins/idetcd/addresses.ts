/**
 * Which addresses a node advertises under its claimed name: the `address`
 * directive's IPs and interface names, or an interface picked automatically.
 *
 * The selection logic is pure ({@link selectInterface}, {@link usableAddresses})
 * so it can be tested with made-up interface lists; {@link listInterfaces}
 * reads the real ones (Deno.networkInterfaces plus Linux's /sys/class/net,
 * because Deno reports no interface flags).
 *
 * @module
 */

import { ipv6ToString, isIP, isIPv4, isIPv6, parseIPv4, parseIPv6 } from "../../go/ip.ts";

/** One network interface with the facts the selection needs. */
export interface InterfaceInfo {
  /** The system's interface name ("eth0"), also what the `address` directive names it by. */
  name: string;
  /** Administratively up and operationally not down. */
  up: boolean;
  /** A loopback interface (IFF_LOOPBACK; without /sys, named "lo"): other hosts cannot reach it. */
  loopback: boolean;
  /** A Linux bridge (has /sys/class/net/<name>/bridge). */
  bridge: boolean;
  /** Its addresses, in the order the system lists them. */
  addresses: string[];
}

/** Interface name prefixes of container and virtual networking that other hosts cannot reach. */
export const VIRTUAL_INTERFACE_PREFIXES: readonly string[] = [
  "docker",
  "br-",
  "veth",
  "virbr",
  "cni",
  "flannel",
  "cali",
  "cilium",
  "kube-",
  "weave",
  "vxlan",
  "tunl",
  "podman",
  "lxcbr",
  "lxdbr",
];

/** Whether `name` looks like a container or virtual bridge interface. */
export function isVirtualInterfaceName(name: string): boolean {
  return VIRTUAL_INTERFACE_PREFIXES.some((p) => name.startsWith(p));
}

/** The canonical (RFC 5952) text of an IPv6 address: lower case, longest zero run as "::". */
export function canonicalIPv6(text: string): string {
  const bytes = parseIPv6(text);
  return bytes ? ipv6ToString(bytes) : text;
}

/** The canonical text of an IP address (IPv6 per RFC 5952, v4-mapped kept; IPv4 as is). */
export function canonicalIP(text: string): string {
  return canonicalIPv6(text);
}

/** What kind of address it is, for deciding whether other hosts can reach it. */
export function addressScope(
  address: string,
): "loopback" | "link-local" | "unspecified" | "ula" | "global" | "invalid" {
  const v4 = parseIPv4(address);
  if (v4) {
    if (v4[0] === 127) return "loopback";
    if (v4[0] === 169 && v4[1] === 254) return "link-local";
    if (v4[0] === 0) return "unspecified";
    return "global";
  }
  const ip = parseIPv6(address);
  if (!ip) return "invalid";
  if (ip.every((x) => x === 0)) return "unspecified";
  if (ip.subarray(0, 15).every((x) => x === 0) && ip[15] === 1) return "loopback";
  if (ip[0] === 0xfe && (ip[1] & 0xc0) === 0x80) return "link-local";
  if ((ip[0] & 0xfe) === 0xfc) return "ula";
  return "global";
}

/**
 * The addresses of one interface worth advertising: its first usable IPv4
 * and its first global IPv6 (a unique-local one when it has no global one).
 * Loopback, link-local (169.254/16, fe80::/10) and unspecified addresses are skipped.
 */
export function usableAddresses(addresses: readonly string[]): string[] {
  const v4 = addresses.find((a) => isIPv4(a) && addressScope(a) === "global");
  const v6 = addresses.find((a) => isIPv6(a) && addressScope(a) === "global") ??
    addresses.find((a) => isIPv6(a) && addressScope(a) === "ula");
  return [v4, v6].filter((a): a is string => a !== undefined).map(canonicalIP);
}

/**
 * The first interface that is up, not loopback, not a container or virtual
 * bridge, and has an address worth advertising; undefined when there is none.
 */
export function selectInterface(interfaces: readonly InterfaceInfo[]): InterfaceInfo | undefined {
  return interfaces.find((i) =>
    i.up && !i.loopback && !i.bridge && !isVirtualInterfaceName(i.name) &&
    usableAddresses(i.addresses).length > 0
  );
}

/** Reads a small /sys file, or undefined when it is not there (not Linux, no permission). */
function readSys(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

function existsSys(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;

/** The host's interfaces in system order, with their flags read from /sys/class/net on Linux. */
export function listInterfaces(): InterfaceInfo[] {
  const byName = new Map<string, InterfaceInfo>();
  for (const entry of Deno.networkInterfaces()) {
    let info = byName.get(entry.name);
    if (!info) {
      const flagsText = readSys(`/sys/class/net/${entry.name}/flags`);
      const operstate = readSys(`/sys/class/net/${entry.name}/operstate`);
      const flags = flagsText === undefined ? undefined : parseInt(flagsText, 16);
      // Without /sys (not Linux) assume up; the address list is all we know.
      const adminUp = flags === undefined ? true : (flags & IFF_UP) !== 0;
      const operUp = operstate === undefined || operstate === "up" || operstate === "unknown";
      info = {
        name: entry.name,
        up: adminUp && operUp,
        loopback: flags !== undefined ? (flags & IFF_LOOPBACK) !== 0 : entry.name === "lo",
        bridge: existsSys(`/sys/class/net/${entry.name}/bridge`),
        addresses: [],
      };
      byName.set(entry.name, info);
    }
    info.addresses.push(entry.address);
  }
  return [...byName.values()];
}

/** Why the advertised addresses could not be determined; the message is one line for the user. */
export class AddressError extends Error {
  /** An error whose `message` is shown to the user as is. */
  constructor(message: string) {
    super(message);
    this.name = "AddressError";
  }
}

/**
 * The addresses to advertise for `specs` (the `address` directive's
 * arguments: IPs and interface names), or of the automatically selected
 * interface when `specs` is empty. Duplicates are dropped; order is kept.
 */
export function resolveAddresses(
  specs: readonly string[],
  interfaces: () => readonly InterfaceInfo[] = listInterfaces,
): string[] {
  const out: string[] = [];
  const add = (a: string) => {
    const c = canonicalIP(a);
    if (!out.includes(c)) out.push(c);
  };
  if (specs.length === 0) {
    const list = interfaces();
    const chosen = selectInterface(list);
    if (!chosen) {
      throw new AddressError(
        `idetcd: no network interface to advertise (up, not loopback, not a container bridge, with a routable address) among ${
          list.map((i) => i.name).join(", ") || "none"
        }; set "address IP|INTERFACE"`,
      );
    }
    usableAddresses(chosen.addresses).forEach(add);
    return out;
  }
  let list: readonly InterfaceInfo[] | undefined;
  for (const spec of specs) {
    if (isIP(spec)) {
      add(spec);
      continue;
    }
    list ??= interfaces();
    const iface = list.find((i) => i.name === spec);
    if (!iface) {
      throw new AddressError(
        `idetcd: address ${spec} is neither an IP address nor an interface (have ${
          list.map((i) => i.name).join(", ") || "none"
        })`,
      );
    }
    const usable = usableAddresses(iface.addresses);
    if (usable.length === 0) {
      throw new AddressError(`idetcd: interface ${spec} has no address to advertise`);
    }
    usable.forEach(add);
  }
  return out;
}
