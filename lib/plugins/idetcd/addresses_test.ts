import assert from "node:assert/strict";
import {
  addressScope,
  canonicalIPv6,
  type InterfaceInfo,
  isVirtualInterfaceName,
  listInterfaces,
  resolveAddresses,
  selectInterface,
  usableAddresses,
} from "./addresses.ts";

const iface = (name: string, addresses: string[], extra: Partial<InterfaceInfo> = {}) => ({
  name,
  up: true,
  loopback: false,
  bridge: false,
  addresses,
  ...extra,
});

Deno.test("addresses: the first up, physical interface with a routable address wins", () => {
  const list: InterfaceInfo[] = [
    iface("lo", ["127.0.0.1", "::1"], { loopback: true }),
    iface("docker0", ["172.17.0.1"]),
    iface("br-1a2b", ["172.18.0.1"]),
    iface("veth12", ["fe80::1"]),
    iface("virbr0", ["192.168.122.1"]),
    iface("cni0", ["10.244.0.1"]),
    iface("flannel.1", ["10.244.0.0"]),
    iface("cali123", ["10.1.1.1"]),
    iface("cilium_host", ["10.2.0.1"]),
    iface("kube-ipvs0", ["10.96.0.1"]),
    iface("mybridge", ["10.9.9.9"], { bridge: true }),
    iface("eth0", ["169.254.1.1", "fe80::2"], {}),
    iface("eth1", ["10.0.0.4"], { up: false }),
    iface("eth2", ["fe80::3", "10.0.0.5", "10.0.0.6", "fd00::5", "2001:db8::5", "2001:db8::6"]),
    iface("eth3", ["10.0.0.7"]),
  ];
  const chosen = selectInterface(list);
  assert.equal(chosen?.name, "eth2");
  assert.deepEqual(usableAddresses(chosen!.addresses), ["10.0.0.5", "2001:db8::5"]);
});

Deno.test("addresses: per-address rules", () => {
  assert.deepEqual(usableAddresses(["fe80::1", "fd00::2"]), ["fd00::2"], "ULA kept when no global");
  assert.deepEqual(usableAddresses(["127.0.0.5", "169.254.0.1", "::1"]), []);
  assert.deepEqual(usableAddresses(["2001:DB8:0:0:0:0:0:1"]), ["2001:db8::1"], "canonical text");
  assert.equal(addressScope("fe80::1"), "link-local");
  assert.equal(addressScope("febf::1"), "link-local");
  assert.equal(addressScope("fec0::1"), "global");
  assert.equal(addressScope("fc00::1"), "ula");
  assert.equal(addressScope("0.0.0.0"), "unspecified");
  assert.equal(canonicalIPv6("2001:0db8:0000:0000:0001:0000:0000:0001"), "2001:db8::1:0:0:1");
  assert.equal(canonicalIPv6("0:0:0:0:0:0:0:1"), "::1");
  assert.equal(canonicalIPv6("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7", "a single zero group stays");
  assert.ok(isVirtualInterfaceName("docker0") && !isVirtualInterfaceName("eth0"));
});

Deno.test("addresses: explicit IPs and interface names", () => {
  const list = () => [iface("eth0", ["10.0.0.4", "2001:db8::4"]), iface("eth1", ["fe80::1"])];
  assert.deepEqual(resolveAddresses(["10.1.1.1", "eth0", "10.0.0.4"], list), [
    "10.1.1.1",
    "10.0.0.4",
    "2001:db8::4",
  ]);
  assert.deepEqual(
    resolveAddresses(["127.0.0.1"], list),
    ["127.0.0.1"],
    "explicit loopback is allowed",
  );
  assert.deepEqual(resolveAddresses([], list), ["10.0.0.4", "2001:db8::4"]);
  assert.throws(() => resolveAddresses(["wlan9"], list), /neither an IP address nor an interface/);
  assert.throws(() => resolveAddresses(["eth1"], list), /has no address to advertise/);
  assert.throws(
    () => resolveAddresses([], () => [iface("lo", ["127.0.0.1"], { loopback: true })]),
    /no network interface to advertise .* among lo; set "address IP\|INTERFACE"/,
  );
});

Deno.test("addresses: the host's interfaces can be listed", () => {
  const list = listInterfaces();
  const lo = list.find((i) => i.name === "lo");
  if (lo) assert.ok(lo.loopback);
});
