import { deepStrictEqual as equal } from "node:assert/strict";
import {
  expandIPv6,
  ipToString,
  ipv6ToString,
  isIP,
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
