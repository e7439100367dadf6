import assert from "node:assert/strict";
import { Resources } from "../../server/resources.ts";
import { assertSetupError, setupContext } from "../health/testing.ts";
import type { Token } from "../../corefile/types.ts";
import { bindPlugin, resolveBindAddresses } from "./mod.ts";

const tok = (text: string): Token => ({ text, file: "Corefile", line: 1 });

const INTERFACES: Deno.NetworkInterfaceInfo[] = [
  {
    name: "lo",
    family: "IPv4",
    address: "127.0.0.1",
    netmask: "255.0.0.0",
    scopeid: null,
    cidr: "127.0.0.1/8",
    mac: "",
  },
  { name: "lo", family: "IPv6", address: "::1", netmask: "", scopeid: 0, cidr: "::1/128", mac: "" },
  {
    name: "eth0",
    family: "IPv4",
    address: "10.0.0.5",
    netmask: "255.0.0.0",
    scopeid: null,
    cidr: "10.0.0.5/8",
    mac: "",
  },
  {
    name: "eth0",
    family: "IPv6",
    address: "fe80::5",
    netmask: "",
    scopeid: 2,
    cidr: "fe80::5/64",
    mac: "",
  },
];

Deno.test("bind: addresses as given, interfaces as their addresses, except removes, no duplicates", () => {
  assert.deepEqual(resolveBindAddresses([tok("127.0.0.1"), tok("[::1]")], [], []), [
    "127.0.0.1",
    "::1",
  ]);
  // eth0's link-local IPv6 needs a zone to bind: left out.
  assert.deepEqual(resolveBindAddresses([tok("eth0"), tok("lo")], [tok("::1")], INTERFACES), [
    "10.0.0.5",
    "127.0.0.1",
  ]);
  assert.deepEqual(resolveBindAddresses([tok("lo"), tok("127.0.0.1")], [], INTERFACES), [
    "127.0.0.1",
    "::1",
  ]);
  assert.throws(
    () => resolveBindAddresses([tok("wlan9")], [], INTERFACES),
    /not a valid IP address or interface name: 'wlan9'/,
  );
  // Not an address (an octet above 255), and no such interface.
  assert.throws(() => resolveBindAddresses([tok("300.0.0.1")], [], INTERFACES), /not a valid IP/);
});

Deno.test("bind setup: CoreDNS's argument errors through the dispenser", () => {
  const resources = new Resources();
  const run = (corefile: string) => {
    const { ctx } = setupContext(corefile, "bind", resources);
    bindPlugin.setup(ctx);
    return ctx.serverOptions.bind;
  };
  assert.deepEqual(run(". {\n  bind 127.0.0.1 ::1\n}"), ["127.0.0.1", "::1"]);
  assertSetupError(
    () => run(". {\n  bind\n}"),
    "plugin/bind: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'bind'",
  );
  assertSetupError(
    () => run(". {\n  bind 127.0.0.1 {\n    except\n  }\n}"),
    "plugin/bind: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'except'",
  );
  assertSetupError(
    () => run(". {\n  bind 127.0.0.1 {\n    only 1.2.3.4\n  }\n}"),
    "plugin/bind: Corefile:3 - Error during parsing: unknown property 'only'",
  );
  assertSetupError(
    () => run(". {\n  bind 127.0.0.1 {\n    except 127.0.0.1\n  }\n}"),
    "plugin/bind: Corefile:2 - Error during parsing: bind: no address left to listen on",
  );
});
