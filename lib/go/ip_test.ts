import { deepStrictEqual as equal } from "node:assert/strict";
import {
  expandIPv6,
  ipToString,
  ipv6ToString,
  isIP,
  isIPv4,
  isIPv6,
  parseIP,
  parseIPv4,
  parseIPv6,
  to4,
} from "./ip.ts";

Deno.test("parseIPv4: four decimal fields, no leading zeros, each up to 255", () => {
  equal(parseIPv4("10.0.0.1"), new Uint8Array([10, 0, 0, 1]));
  equal(parseIPv4("255.255.255.255"), new Uint8Array([255, 255, 255, 255]));
  for (
    const bad of ["010.0.0.1", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.", ".1.2.3", "256.0.0.1", ""]
  ) {
    equal(parseIPv4(bad), undefined, bad);
  }
});

Deno.test("parseIPv6: '::', a dotted tail, no zone", () => {
  equal(expandIPv6("::"), [0, 0, 0, 0, 0, 0, 0, 0]);
  equal(expandIPv6("2001:db8::1"), [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
  equal(expandIPv6("::ffff:1.2.3.4"), [0, 0, 0, 0, 0, 0xffff, 0x102, 0x304]);
  equal(expandIPv6("1:2:3:4:5:6:7:8"), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (
    const bad of [
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "fe80::1%eth0",
      "12345::",
      "1:2:3:4:5:6:7::8",
      ":1",
      "1:",
    ]
  ) {
    equal(parseIPv6(bad), undefined, bad);
  }
});

Deno.test("parseIP: Go's net.ParseIP, IPv4 as v4-mapped", () => {
  equal(ipToString(parseIP("10.0.0.1")!), "10.0.0.1");
  equal(parseIP("10.0.0.1")!.length, 16);
  equal(to4(parseIP("10.0.0.1")!), new Uint8Array([10, 0, 0, 1]));
  equal(to4(parseIP("::1")!), undefined);
  equal(ipToString(parseIP("::ffff:10.0.0.1")!), "10.0.0.1");
  equal(ipToString(parseIP("2001:DB8:0:0:0:0:0:1")!), "2001:db8::1");
  for (const bad of ["[::1]", "fe80::1%eth0", "host", "", "1.2.3.4:53"]) {
    equal(isIP(bad), false, bad);
  }
});

Deno.test("ipv6ToString: RFC 5952, v4-mapped dotted", () => {
  equal(ipv6ToString(parseIPv6("2001:db8:0:0:1:0:0:1")!), "2001:db8::1:0:0:1");
  equal(ipv6ToString(parseIPv6("2001:db8:0:1:1:1:1:1")!), "2001:db8:0:1:1:1:1:1");
  equal(ipv6ToString(parseIPv6("::ffff:1.2.3.4")!), "::ffff:1.2.3.4");
  equal(ipv6ToString(parseIPv6("::")!), "::");
});

Deno.test("parseIP: the etcd plugin's msg.Service.HostType cases (net.ParseIP)", () => {
  equal(parseIP("1::2::3"), undefined);
  equal(parseIP("12345::1"), undefined);
  equal(parseIP("1:2:3:4:5:6:7:8:9"), undefined);
  equal(parseIP("1:2:3:4:5:6:7::8"), undefined); // :: must stand for at least one group
  equal(parseIP("0.0.0.0")?.[15], 0);
  equal(parseIP("255.255.255.255")?.[12], 255);
  equal(parseIP("256.0.0.1"), undefined);
  equal(ipToString(parseIP("2001:db8::1.2.3.4")!), "2001:db8::102:304");
  equal(parseIP("1.2.3.4."), undefined);
  equal(parseIP("1.2.3"), undefined);
});

Deno.test("isIPv4 / isIPv6: the family of a valid address; a dotted tail only after the groups", () => {
  equal(isIPv4("10.0.0.1"), true);
  equal(isIPv4("::ffff:10.0.0.1"), false);
  equal(isIPv4("010.0.0.1"), false);
  equal(isIPv6("::ffff:10.0.0.1"), true);
  equal(isIPv6("fe80::1"), true);
  equal(isIPv6("10.0.0.1"), false);
  equal(isIPv6("fe80::1%eth0"), false);
  // Listen addresses: netip refuses an IPv4 part anywhere but at the end.
  equal(parseIPv6("1.2.3.4::"), undefined);
  equal(parseIPv6("1:1.2.3.4::"), undefined);
  equal(parseIPv6("::1.2.3.4"), new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]));
});
