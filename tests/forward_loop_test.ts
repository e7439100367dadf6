/**
 * A `forward` that points back at the server itself is refused at startup
 * with one CoreDNS-style line (exit 1), whether the upstream is written out
 * or comes from a resolv.conf file; a forward to another server still works.
 * Real `main.ts` processes, real sockets, dig.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { dig, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort } from "./helpers/wait.ts";

/** Starts the server and expects it to refuse its Corefile: returns its whole output. */
async function refused(conf: string): Promise<string> {
  await using server = await startServer(conf, { readyText: null });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([
    server.exited,
    new Promise<string>((resolve) => timer = setTimeout(() => resolve("still running"), 20_000)),
  ]);
  clearTimeout(timer);
  assert.equal(code, 1, server.output());
  return server.output().trim();
}

Deno.test("forward loop: forward . 127.0.0.1:PORT on a server listening on PORT fails to start with one line", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {
    forward . 127.0.0.1:${port}
}
`);
  assert.equal(
    await refused(conf),
    `plugin/forward: ${conf}:2 - Error during parsing: forward . 127.0.0.1:${port} would loop: ` +
      `127.0.0.1:${port} is this server, which listens on port ${port} of every local address; forward to another resolver`,
  );
});

Deno.test("forward loop: a bound server refuses a forward to its own bind address, also through a resolv.conf", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`example.org:${port} {
    bind 127.0.0.1
    forward . 192.0.2.1 [::1]:${port}
}
`);
  // [::1] is not where this server listens: that stanza is fine.
  await using ok = await startServer(conf);
  ok.kill("SIGTERM");
  assert.equal(await ok.exited, 0, ok.output());

  const dir = dirname(conf);
  await Deno.writeTextFile(join(dir, "resolv.conf"), "nameserver 127.0.0.1\n");
  // A resolv.conf's nameservers are on port 53: a loop for a server on port 53 only.
  const loop = join(dir, "Corefile.loop");
  await Deno.writeTextFile(
    loop,
    `.:53 {
    bind 127.0.0.1
    forward . resolv.conf
}
`,
  );
  assert.equal(
    await refused(loop),
    `plugin/forward: ${loop}:3 - Error during parsing: forward . resolv.conf would loop: ` +
      "its nameserver 127.0.0.1 (port 53) is this server, which listens on 127.0.0.1:53; forward to another resolver",
  );
});

Deno.test("forward loop: a normal forward to another server still answers", async () => {
  const upstreamPort = await freePort();
  const port = await freePort();
  const upstream = await writeCorefile(`.:${upstreamPort} {
    bind 127.0.0.1
    whoami
}
`);
  const forwarder = await writeCorefile(`.:${port} {
    bind 127.0.0.1
    forward . 127.0.0.1:${upstreamPort}
}
`);
  await using up = await startServer(upstream);
  await using server = await startServer(forwarder);
  const answer = await dig("@127.0.0.1", "-p", String(port), "example.org.", "A");
  assert.match(answer, /status: NOERROR/);
  // whoami's answer comes from the upstream: the forwarder's address and source port.
  assert.match(answer, /_udp\.example\.org\.\s+0\s+IN\s+SRV\s+0 0 \d+ \./);
  assert.ok(up.pid > 0 && server.pid > 0);
});
