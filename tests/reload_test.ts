/**
 * Reloading the real program: the reload plugin noticing a changed Corefile,
 * broken Corefiles keeping the old configuration, and SIGHUP/SIGUSR1.
 */

import assert from "node:assert/strict";
import { Rcode, Type } from "../lib/dns/types.ts";
import { queryUdp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

/** Removes the temp folder of a Corefile written by writeCorefile when disposed. */
function cleanup(conf: string): AsyncDisposable {
  return {
    [Symbol.asyncDispose]: () =>
      Deno.remove(conf.slice(0, conf.lastIndexOf("/")), { recursive: true }),
  };
}

async function rcode(port: number, name: string): Promise<number> {
  return (await queryUdp("127.0.0.1", port, name, Type.A)).rcode;
}

/** Waits until `name` gets `want` (a reload takes up to one interval). */
function waitForRcode(port: number, name: string, want: number): Promise<boolean> {
  return waitFor(async () => (await rcode(port, name)) === want, {
    timeoutMs: 15_000,
    intervalMs: 100,
    what: `${name} to answer rcode ${want}`,
  });
}

Deno.test({
  name: "reload: a changed Corefile takes over; broken ones keep the old config and say why",
  async fn() {
    const port = await freePort();
    const block = (zone: string, extra = "") =>
      `${zone}:${port} {\n    reload 2s 0\n    whoami${extra}\n}\n`;
    const conf = await writeCorefile(block("example.org"));
    await using _cleanup = cleanup(conf);
    await using server = await startServer(conf);
    await server.waitForOutput(
      /\[INFO\] plugin\/reload: Running configuration SHA512 = [0-9a-f]{128}\n/,
    );
    assert.equal(await rcode(port, "a.example.org."), Rcode.Success);
    assert.equal(await rcode(port, "a.example.net."), Rcode.Refused);

    // A new zone: the old one goes away, the new one answers.
    await Deno.writeTextFile(conf, block("example.net"));
    await waitForRcode(port, "a.example.net.", Rcode.Success);
    assert.equal(await rcode(port, "a.example.org."), Rcode.Refused);
    const hashes = server.output().match(/Running configuration SHA512 = [0-9a-f]{128}/g) ?? [];
    assert.equal(hashes.length, 2);
    assert.notEqual(hashes[0], hashes[1]);

    // A Corefile that does not parse: a warning, and the running config keeps answering.
    await Deno.writeTextFile(conf, `example.com:${port} {\n    reload 2s 0\n    whoami\n`);
    await server.waitForOutput("[WARNING] plugin/reload: Corefile parse failed: ");
    assert.equal(await rcode(port, "a.example.net."), Rcode.Success);

    // One that parses but cannot start: an error naming the reason, old config kept.
    await Deno.writeTextFile(conf, block("example.com", " extra"));
    await server.waitForOutput(
      /\[ERROR\] plugin\/reload: keeping the running configuration: .*Wrong argument count or unexpected line ending after 'extra'/,
    );
    assert.equal(await rcode(port, "a.example.net."), Rcode.Success);
    assert.equal(await rcode(port, "a.example.com."), Rcode.Refused);

    // Fixed again: it takes over.
    await Deno.writeTextFile(conf, block("example.com"));
    await waitForRcode(port, "a.example.com.", Rcode.Success);
    assert.equal(await rcode(port, "a.example.net."), Rcode.Refused);
  },
});

Deno.test({
  name:
    "reload: SIGHUP and SIGUSR1 reload the Corefile without the reload plugin; a broken one is kept out",
  ignore: Deno.build.os === "windows",
  async fn() {
    const port = await freePort();
    const conf = await writeCorefile(`example.org:${port} {\n    whoami\n}\n`);
    await using _cleanup = cleanup(conf);
    await using server = await startServer(conf);
    assert.equal(await rcode(port, "a.example.org."), Rcode.Success);

    await Deno.writeTextFile(conf, `example.net:${port} {\n    whoami\n}\n`);
    server.kill("SIGHUP");
    await server.waitForOutput("[INFO] plugin/reload: reloaded configuration (SIGHUP)");
    assert.equal(await rcode(port, "a.example.net."), Rcode.Success);
    assert.equal(await rcode(port, "a.example.org."), Rcode.Refused);

    await Deno.writeTextFile(conf, `example.com:${port} {\n    whoami\n    nosuchplugin\n}\n`);
    server.kill("SIGUSR1");
    await server.waitForOutput(
      /\[ERROR\] plugin\/reload: keeping the running configuration: .*nosuchplugin/,
    );
    assert.equal(await rcode(port, "a.example.net."), Rcode.Success);
    assert.doesNotMatch(server.output(), /Running configuration SHA512/);
  },
});
