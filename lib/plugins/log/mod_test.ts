/**
 * The log plugin through its real setup and handler, in front of a backend,
 * behind the real Dispatcher (so each line is written from the reply as
 * encoded), with a captured logger: every field of CoreDNS's formats, the
 * response classes, names, repeated directives and the setup errors.
 */

import assert from "node:assert/strict";
import { Rcode, type RR, Type } from "../../dns/types.ts";
import { encodeQuery } from "../../dns/wire.ts";
import { createLogger } from "../../log.ts";
import type { BlockRuntime } from "../../server/config.ts";
import { Dispatcher, type Peer } from "../../server/dispatch.ts";
import type { Plugin, Reply, Request } from "../../server/plugin.ts";
import { a, directivesOf, quietLog, setupContext, soa } from "../forward/testkit.ts";
import { COMBINED_FORMAT, COMMON_FORMAT, formatDuration, logPlugin } from "./mod.ts";

const UDP: Peer = {
  transport: "udp",
  remoteAddress: "127.0.0.1",
  remotePort: 5353,
  localAddress: "127.0.0.1",
  localPort: 53,
};

/** The reply the backend gives for a name: by its first label. */
function backendReply(req: Request): Reply {
  const base = { authoritative: true, answer: [] as RR[], authority: [] as RR[], additional: [] };
  switch (req.qname.split(".")[0]) {
    case "nx": // NXDOMAIN with the SOA: denial
      return { ...base, rcode: Rcode.NameError, authority: [soa()] };
    case "nodata": // NOERROR, no answer, the SOA: denial
      return { ...base, rcode: Rcode.Success, authority: [soa()] };
    case "fail": // SERVFAIL: error
      return { ...base, rcode: Rcode.ServerFailure, authoritative: false };
    case "refused": // REFUSED: error
      return { ...base, rcode: Rcode.Refused, authoritative: false };
    default: // an answer: success
      return { ...base, rcode: Rcode.Success, answer: [a(req.question.name, "10.0.0.1")] };
  }
}

const backend: Plugin = {
  name: "backend",
  serve: (req) => Promise.resolve(backendReply(req)),
};

/** A dispatcher for `log` (set up from `body`) in front of the backend; what log wrote. */
async function serveWithLog(body: string) {
  const lines: string[] = [];
  const ctx = setupContext(directivesOf("log", body), {
    zones: ["."],
    log: createLogger("plugin/log", (_level, line) => lines.push(line)),
  });
  const log = (await logPlugin.setup(ctx)) as Plugin;
  assert.equal(log.name, "log");
  const block: BlockRuntime = {
    zones: ["."],
    keys: [],
    port: 53,
    bind: [],
    chain: (req) => log.serve(req, (r) => backend.serve(r, () => Promise.reject())),
    plugins: [log, backend],
    anyClass: false,
  };
  const dispatcher = new Dispatcher(
    { host: "", port: 53, zones: new Map([[".", block]]) },
    quietLog,
  );
  let id = 100;
  /** Sends one query; resolves to its size, the reply's size and what log wrote for it. */
  const query = async (
    name: string,
    type: number = Type.A,
    options: { peer?: Peer; udpSize?: number; dnssecOk?: boolean } = {},
  ) => {
    const packet = encodeQuery(id++, name, type, options);
    const before = lines.length;
    const reply = await dispatcher.handle(packet, options.peer ?? UDP);
    assert.ok(reply, `a reply to ${name}`);
    return { id: id - 1, size: packet.length, rsize: reply.length, lines: lines.slice(before) };
  };
  return { query, lines, shutdown: () => ctx.shutdown() };
}

/** The duration field: Go's FormatFloat of the seconds. */
const DURATION = /^\d+(\.\d+)?s$/;

/** Splits a common-format line into the part before the duration and the duration. */
function withoutDuration(line: string): [string, string] {
  const at = line.lastIndexOf(" ");
  return [line.slice(0, at), line.slice(at + 1)];
}

Deno.test("log: the default {common} line, every field from the query and the reply as written", async () => {
  const s = await serveWithLog("log");
  try {
    const q = await s.query("WWW.Example.ORG.", Type.A);
    assert.equal(q.lines.length, 1);
    const [line, duration] = withoutDuration(q.lines[0]);
    // Name lower-cased, type and class names, size/rsize in bytes, DO false, 512 without EDNS.
    assert.equal(
      line,
      `[INFO] 127.0.0.1:5353 - ${q.id} "A IN www.example.org. udp ${q.size} false 512" NOERROR qr,aa,rd ${q.rsize}`,
    );
    assert.match(duration, DURATION);

    // EDNS0 with DO: {>do} true, {>bufsize} the client's size; an IPv6 client in brackets.
    const v6: Peer = { ...UDP, remoteAddress: "::1", remotePort: 40000, localAddress: "::1" };
    const e = await s.query("nx.example.org.", Type.AAAA, {
      peer: v6,
      udpSize: 1200,
      dnssecOk: true,
    });
    assert.equal(
      withoutDuration(e.lines[0])[0],
      `[INFO] [::1]:40000 - ${e.id} "AAAA IN nx.example.org. udp ${e.size} true 1200" NXDOMAIN qr,aa,rd ${e.rsize}`,
    );

    // TCP: {proto} tcp, {>bufsize} 65535 (CoreDNS's state.Size()).
    const t = await s.query("fail.example.org.", Type.MX, { peer: { ...UDP, transport: "tcp" } });
    assert.equal(
      withoutDuration(t.lines[0])[0],
      `[INFO] 127.0.0.1:5353 - ${t.id} "MX IN fail.example.org. tcp ${t.size} false 65535" SERVFAIL qr,rd ${t.rsize}`,
    );
  } finally {
    await s.shutdown();
  }
});

Deno.test("log: {combined} adds the opcode; a format of its own, with {local}, {/zone} and {>rflags}", async () => {
  const combined = await serveWithLog("log . {combined}");
  const custom = await serveWithLog(
    'log . "{type} {name} {local} {/zone} {rcode} {>rflags} {>id}"',
  );
  try {
    const q = await combined.query("a.example.org.");
    assert.equal(q.lines.length, 1);
    assert.ok(q.lines[0].endsWith(' "0"'), q.lines[0]);
    const [common] = withoutDuration(q.lines[0].slice(0, -' "0"'.length));
    assert.equal(
      common,
      `[INFO] 127.0.0.1:5353 - ${q.id} "A IN a.example.org. udp ${q.size} false 512" NOERROR qr,aa,rd ${q.rsize}`,
    );
    const c = await custom.query("nodata.example.org.", Type.TXT);
    assert.deepEqual(c.lines, [
      `[INFO] TXT nodata.example.org. 127.0.0.1 . NOERROR qr,aa,rd ${c.id}`,
    ]);
    // The exported formats are CoreDNS's.
    assert.equal(
      COMMON_FORMAT,
      '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}',
    );
    assert.equal(COMBINED_FORMAT, `${COMMON_FORMAT} "{>opcode}"`);
  } finally {
    await combined.shutdown();
    await custom.shutdown();
  }
});

Deno.test("log class: success, denial, error and all select which replies are logged", async () => {
  /** Which of the kinds of reply a `class` line logs. */
  const logged = async (classes: string) => {
    const s = await serveWithLog(
      classes === ""
        ? 'log . "{name} {rcode}"'
        : `log . "{name} {rcode}" {\n    class ${classes}\n}`,
    );
    try {
      for (const name of ["ok", "nx", "nodata", "fail", "refused"]) {
        await s.query(`${name}.example.org.`);
      }
      return s.lines.map((l) => l.replace("[INFO] ", "").replace(".example.org.", ""));
    } finally {
      await s.shutdown();
    }
  };
  const all = ["ok NOERROR", "nx NXDOMAIN", "nodata NOERROR", "fail SERVFAIL", "refused REFUSED"];
  assert.deepEqual(await logged("success"), ["ok NOERROR"]);
  assert.deepEqual(await logged("denial"), ["nx NXDOMAIN", "nodata NOERROR"]);
  assert.deepEqual(await logged("error"), ["fail SERVFAIL", "refused REFUSED"]);
  assert.deepEqual(await logged("denial error"), all.slice(1));
  assert.deepEqual(await logged("all"), all);
  assert.deepEqual(await logged("SUCCESS"), ["ok NOERROR"], "class names in any case");
  assert.deepEqual(await logged(""), all, "no class line: all");
});

Deno.test("log names: only queries for the names and below are logged; the directive may be repeated", async () => {
  const s = await serveWithLog(
    [
      'log example.org "A {name}"',
      'log sub.example.org other.net "B {name} {rcode}" {',
      "    class denial",
      "}",
    ].join("\n"),
  );
  try {
    assert.deepEqual((await s.query("www.example.org.")).lines, ["[INFO] A www.example.org."]);
    // Both rules match a name below both: one line each, in the Corefile's order.
    assert.deepEqual((await s.query("nx.sub.example.org.")).lines, [
      "[INFO] A nx.sub.example.org.",
      "[INFO] B nx.sub.example.org. NXDOMAIN",
    ]);
    assert.deepEqual((await s.query("ok.sub.example.org.")).lines, [
      "[INFO] A ok.sub.example.org.",
    ]);
    assert.deepEqual((await s.query("nx.other.net.")).lines, ["[INFO] B nx.other.net. NXDOMAIN"]);
    // A name no rule covers is answered and not logged; a name that only looks alike neither.
    assert.deepEqual((await s.query("www.example.com.")).lines, []);
    assert.deepEqual((await s.query("notexample.org.")).lines, []);
  } finally {
    await s.shutdown();
  }
});

Deno.test("log: the duration is Go's FormatFloat of the seconds", () => {
  assert.equal(formatDuration(0.161), "0.000161s");
  assert.equal(formatDuration(1500), "1.5s");
  assert.equal(formatDuration(2000), "2s");
  assert.equal(formatDuration(0), "0s");
});

Deno.test("log setup: CoreDNS's error texts", async () => {
  const fails = async (body: string, message: RegExp) => {
    await assert.rejects(
      async () => {
        await logPlugin.setup(setupContext(directivesOf("log", body)));
      },
      message,
      body,
    );
  };
  await fails("log {\n    bogus\n}", /unknown property 'bogus'/);
  await fails(
    "log {\n    class\n}",
    /Wrong argument count or unexpected line ending after 'class'/,
  );
  await fails("log {\n    class successes\n}", /invalid class: successes/);
});
