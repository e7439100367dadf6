import { deepStrictEqual as equal, throws } from "node:assert/strict";
import { joinHostPort, splitHostPort } from "./net.ts";

Deno.test("splitHostPort: Go's net.SplitHostPort and its errors", () => {
  equal(splitHostPort(":8080"), { host: "", port: "8080" });
  equal(splitHostPort("1.2.3.4:53"), { host: "1.2.3.4", port: "53" });
  equal(splitHostPort("[::1]:80"), { host: "::1", port: "80" });
  equal(splitHostPort("[fe80::1%eth0]:53"), { host: "fe80::1%eth0", port: "53" });
  equal(splitHostPort("host:"), { host: "host", port: "" });
  throws(() => splitHostPort("::1:80"), { message: "address ::1:80: too many colons in address" });
  throws(() => splitHostPort("[::1]"), { message: "address [::1]: missing port in address" });
  throws(() => splitHostPort("[::1:80"), { message: "address [::1:80: missing ']' in address" });
  throws(() => splitHostPort("a"), { message: "address a: missing port in address" });
  throws(() => splitHostPort("[a]b:80"), { message: "address [a]b:80: missing port in address" });
  throws(() => splitHostPort("a]:80"), { message: "address a]:80: unexpected ']' in address" });
});

Deno.test("joinHostPort: brackets for a host with a colon", () => {
  equal(joinHostPort("1.2.3.4", 53), "1.2.3.4:53");
  equal(joinHostPort("::1", "53"), "[::1]:53");
  equal(joinHostPort("", 53), ":53");
});
