/**
 * The program as a user runs it: a Corefile, the process from the command
 * line, dig against it.
 */

import assert from "node:assert/strict";
import { dig, queryTcp, queryUdp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort } from "./helpers/wait.ts";
import { Rcode, Type } from "../lib/dns/types.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function runMain(args: string[], cwd?: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("e2e: `.:PORT { whoami }` answers dig over UDP and TCP as CoreDNS", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    whoami\n}\n`);
  await using _server = await startServer(conf);
  for (const transport of ["+notcp", "+tcp"]) {
    const out = await dig("@127.0.0.1", "-p", String(port), transport, "example.org", "A");
    assert.match(out, /status: NOERROR/);
    assert.match(out, /flags: qr aa rd;/);
    assert.match(out, /ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 3/);
    assert.match(out, /^example\.org\.\s+0\s+IN\s+A\s+127\.0\.0\.1$/m);
    const proto = transport === "+tcp" ? "tcp" : "udp";
    assert.match(
      out,
      new RegExp(`^_${proto}\\.example\\.org\\.\\s+0\\s+IN\\s+SRV\\s+0 0 \\d+ \\.$`, "m"),
    );
  }
});

Deno.test("e2e: with no bind the server answers on 127.0.0.1 and ::1", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    whoami\n}\n`);
  await using _server = await startServer(conf);
  const v4 = await queryUdp("127.0.0.1", port, "a.example.", Type.A);
  assert.equal(v4.additional[0].data, "127.0.0.1");
  let v6Available = true;
  try {
    const probe = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
    probe.close();
  } catch {
    v6Available = false;
  }
  if (v6Available) {
    const v6 = await queryUdp("::1", port, "a.example.", Type.A);
    assert.equal(v6.additional[0].type, Type.AAAA);
    assert.equal(v6.additional[0].data, "::1");
  }
  const tcp = await queryTcp("127.0.0.1", port, "a.example.", Type.A);
  assert.equal(tcp.additional[1].name, "_tcp.a.example.");
});

Deno.test("e2e: -dns.port applies to blocks without a port; unknown zones are REFUSED", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`example.org {\n    whoami\n}\n`);
  await using server = await startServer(conf, { args: ["-dns.port", String(port)] });
  assert.match(server.output(), new RegExp(`example\\.org\\.:${port}`));
  assert.equal(
    (await queryUdp("127.0.0.1", port, "www.example.org.", Type.A)).rcode,
    Rcode.Success,
  );
  assert.equal((await queryUdp("127.0.0.1", port, "example.com.", Type.A)).rcode, Rcode.Refused);
});

Deno.test("e2e: no Corefile means CoreDNS's default `.:PORT { whoami log }`", async () => {
  const port = await freePort();
  const dir = await Deno.makeTempDir();
  await using server = await startServer(null, { cwd: dir, args: ["-p", String(port)] });
  const m = await queryUdp("127.0.0.1", port, "example.org.", Type.A);
  assert.equal(m.additional[0].data, "127.0.0.1");
  await server.waitForOutput(
    /\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN example\.org\. udp \d+ false 512" NOERROR qr,aa,rd \d+ [\d.]+s/,
  );
});

Deno.test("e2e: command line errors print usage and exit 2", async () => {
  const unknown = await runMain(["-nosuchflag"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Usage: idetcd/);
  const stray = await runMain(["stray-argument"]);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /extra command line arguments: stray-argument/);
  const version = await runMain(["-version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^idetcd-\d+\.\d+\.\d+/);
  const plugins = await runMain(["--plugins"]);
  assert.match(plugins.stdout, /dns\.whoami/);
});

Deno.test("e2e: a broken Corefile exits 1 naming file:line and the problem", async () => {
  const conf = await writeCorefile(`.:0 {\n    whoami\n    nosuchplugin\n}\n`);
  const out = await runMain(["-conf", conf]);
  assert.equal(out.code, 1);
  assert.match(out.stderr, /Corefile:3 - Error during parsing: Unknown directive 'nosuchplugin'/);
  const twice = await writeCorefile(
    `example.org:1053 {\n    whoami\n}\nEXAMPLE.org.:1053 {\n    whoami\n}\n`,
  );
  const dup = await runMain(["-conf", twice]);
  assert.equal(dup.code, 1);
  assert.match(
    dup.stderr,
    /Corefile:4 - Error during parsing: cannot serve dns:\/\/example\.org\.:1053 - it is already defined/,
  );
  const missing = await runMain(["-conf", "/nonexistent/Corefile"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /open \/nonexistent\/Corefile: no such file or directory/);
});

Deno.test("e2e: SIGTERM stops the server and removes the pidfile", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    whoami\n}\n`);
  const pidfile = conf.replace(/Corefile$/, "idetcd.pid");
  const server = await startServer(conf, { args: ["-pidfile", pidfile] });
  assert.equal((await Deno.readTextFile(pidfile)).trim(), String(server.pid));
  server.kill("SIGTERM");
  assert.equal(await server.exited, 0);
  await assert.rejects(Deno.stat(pidfile));
});

Deno.test("e2e: SIGTERMs that keep coming while it stops still end in exit 0", async () => {
  // deno task and shells pass a process group's SIGTERM on to the server, so a second
  // one may land at any point of the shutdown, the very end included. The window at the
  // end is narrow: a few rounds make a regression show.
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    whoami\n}\n`);
  for (let round = 1; round <= 5; round++) {
    const server = await startServer(conf);
    let exited = false;
    const code = server.exited.finally(() => exited = true);
    let sent = 0;
    while (!exited) {
      try {
        server.kill("SIGTERM");
        sent++;
      } catch {
        break; // gone between the check and the signal
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.equal(
      await code,
      0,
      `round ${round}, exit code after ${sent} SIGTERMs:\n${server.output()}`,
    );
  }
});
