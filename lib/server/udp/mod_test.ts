/**
 * Choosing the UDP path: the flag, IDETCD_UDP, auto; and, on real server
 * processes, what each FFI permission gives: none (portable), libc's paths
 * only (what the release binary is compiled with: batched), and `batched`
 * asked for where it cannot be had (an error, never a silent fallback).
 */

import assert from "node:assert/strict";
import {
  batchedUnavailable,
  isUdpChoice,
  resolveUdpPath,
  UDP_ENV,
  type UdpChoice,
  udpChoice,
  UdpPaths,
} from "./mod.ts";
import { Instance } from "../instance.ts";
import { parseCorefile } from "../../corefile/parser.ts";
import { bindPlugin } from "../../plugins/bind/mod.ts";
import { whoamiPlugin } from "../../plugins/whoami/mod.ts";
import { LIBC_PATHS } from "./ffi.ts";
import { createLogger, type Logger } from "../../log.ts";
import { queryUdp, startServer } from "../../../tests/helpers/process.ts";
import { freePort, waitFor } from "../../../tests/helpers/wait.ts";
import { Child } from "../../../tests/helpers/child.ts";
import { Type } from "../../dns/types.ts";
import { encodeQuery } from "../../dns/wire.ts";

const quiet = createLogger("test", () => {});
const MAIN = new URL("../../../main.ts", import.meta.url).pathname;
const unavailable = batchedUnavailable();

/**
 * A logger that keeps every line in `lines`, DEBUG included (createLogger's
 * DEBUG follows the process's -debug switch).
 */
function recording(lines: string[]): Logger {
  const log: Logger = {
    debug: (msg) => lines.push(msg),
    info: (msg) => lines.push(msg),
    warning: (msg) => lines.push(msg),
    error: (msg) => lines.push(msg),
    child: () => log,
  };
  return log;
}

/** Runs `fn` with IDETCD_UDP set to `value` (or unset), restoring it after. */
function withEnv<T>(value: string | undefined, fn: () => T): T {
  const before = Deno.env.get(UDP_ENV);
  if (value === undefined) Deno.env.delete(UDP_ENV);
  else Deno.env.set(UDP_ENV, value);
  try {
    return fn();
  } finally {
    if (before === undefined) Deno.env.delete(UDP_ENV);
    else Deno.env.set(UDP_ENV, before);
  }
}

Deno.test("udp path: the flag beats IDETCD_UDP, which beats auto; a bad value is an error", () => {
  withEnv(undefined, () => assert.deepEqual(udpChoice(), { choice: "auto", from: "default" }));
  withEnv("Portable", () => {
    assert.deepEqual(udpChoice(), { choice: "portable", from: "env" });
    assert.deepEqual(udpChoice("batched"), { choice: "batched", from: "flag" });
    assert.deepEqual(new UdpPaths("batched").choice(), { choice: "batched", from: "flag" });
    assert.deepEqual(new UdpPaths().choice(), { choice: "portable", from: "env" });
  });
  withEnv("fast", () => assert.throws(() => udpChoice(), /IDETCD_UDP=fast: want auto/));
  assert.ok(isUdpChoice("auto") && isUdpChoice("batched") && isUdpChoice("portable"));
  assert.ok(!isUdpChoice("Batched") && !isUdpChoice(""));
});

Deno.test("udp path: portable when asked; batched by default and when asked where it can be had", async () => {
  assert.deepEqual(resolveUdpPath("", "portable"), { path: "portable", reason: "-udp=portable" });
  const portable = new UdpPaths("portable").open("127.0.0.1", 0, quiet);
  assert.equal(portable.path, "portable");
  await portable.close();
  if (unavailable) {
    assert.equal(resolveUdpPath("", "auto").path, "portable");
    assert.throws(
      () => resolveUdpPath("", "batched"),
      /-udp=batched, but the batched UDP path cannot/,
    );
  } else {
    assert.deepEqual(
      resolveUdpPath("", "auto"),
      { path: "batched" },
      "auto is the batched path here",
    );
    // A bind address the batched path cannot take gives auto the portable path, and why.
    assert.deepEqual(resolveUdpPath("fe80::1%eth0", "auto"), {
      path: "portable",
      reason: "fe80::1%eth0 is not an IP address",
    });
    assert.deepEqual(resolveUdpPath("", "batched"), { path: "batched" });
    // Not an IP address (a zone, a name): batched refuses.
    assert.throws(() => resolveUdpPath("fe80::1%eth0", "batched"), /not an IP address/);
    const batched = new UdpPaths("batched").open("127.0.0.1", 0, quiet);
    assert.equal(batched.path, "batched");
    await batched.close();
  }
});

Deno.test("udp path: each UdpPaths says why it took the portable path once, whatever the other does", async () => {
  const lines: string[] = [];
  const log = recording(lines);
  const said = () => lines.filter((l) => l.includes("udp: portable path")).length;
  const first = new UdpPaths("portable");
  for (let i = 0; i < 2; i++) await first.open("127.0.0.1", 0, log).close();
  assert.equal(said(), 1, lines.join("\n"));
  // A second server in the process (its own UdpPaths) says it for itself.
  await new UdpPaths("portable").open("127.0.0.1", 0, log).close();
  assert.equal(said(), 2, lines.join("\n"));
});

Deno.test("udp path: each Instance opens its listeners by its own -udp flag, not another's", async () => {
  const serve = async (udp: UdpChoice | undefined) => {
    const lines: string[] = [];
    const log = recording(lines);
    const port = await freePort();
    const instance = new Instance({
      plugins: [bindPlugin, whoamiPlugin],
      defaultPort: port,
      configDir: ".",
      log,
      udp,
    });
    await instance.start(parseCorefile(`.:${port} {\n bind 127.0.0.1\n whoami\n}\n`, "Corefile", {
      isDirective: () => true,
    }));
    return { instance, port, lines };
  };
  const portable = await serve("portable");
  try {
    const other = await serve(undefined);
    try {
      for (const server of [portable, other]) {
        const reply = await queryUdp("127.0.0.1", server.port, "who.example.", Type.A);
        assert.equal(reply.additional[0].data, "127.0.0.1");
      }
      assert.ok(
        portable.lines.some((l) =>
          l.includes("udp: portable path (Deno.listenDatagram): -udp=portable")
        ),
        portable.lines.join("\n"),
      );
      assert.ok(!other.lines.some((l) => l.includes("-udp=")), other.lines.join("\n"));
    } finally {
      await other.instance.stop();
    }
  } finally {
    await portable.instance.stop();
  }
});

Deno.test({
  name: "udp path: on Linux glibc x86_64/aarch64 with FFI granted, auto is the batched path",
  ignore: Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch),
  fn() {
    // CI runs the suite once on each path; this keeps the first pass honest
    // (a machine where the batched path silently fell back would pass both
    // passes on the portable path).
    assert.equal(unavailable, undefined, `the batched path is unavailable: ${unavailable}`);
    assert.deepEqual(resolveUdpPath("", "auto"), { path: "batched" });
    assert.deepEqual(resolveUdpPath("127.0.0.1", "auto"), { path: "batched" });
  },
});

/** A server process with exactly `permissions`, its output, and a stop. */
async function serve(
  permissions: string[],
  extra: string[] = [],
  env: Record<string, string> = {},
) {
  const port = await freePort();
  const dir = await Deno.makeTempDir({ prefix: "idetcd-udp-path-" });
  const conf = `${dir}/Corefile`;
  await Deno.writeTextFile(conf, `.:${port} {\n    debug\n    whoami\n}\n`);
  const child = await Child.spawn(
    Deno.execPath(),
    ["run", ...permissions, MAIN, "-conf", conf, ...extra],
    {
      label: "idetcd",
      // auto unless the test says otherwise: the suite's own IDETCD_UDP (CI's
      // portable pass) must not decide what these tests look at.
      env: { [UDP_ENV]: "auto", ...env },
    },
  );
  return {
    port,
    output: () => child.output(),
    exited: child.status.then((s) => s.code),
    /** Waits for the banner (serving) or the exit; true when serving. */
    async started(): Promise<boolean> {
      await waitFor(() => !child.running || /^idetcd-\d/m.test(child.output()), {
        timeoutMs: 30_000,
        what: `the server to start; output:\n${child.output()}`,
      });
      return child.running;
    },
    async [Symbol.asyncDispose]() {
      child.signal("SIGTERM");
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const SERVER_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];
const libcPaths = LIBC_PATHS[Deno.build.arch as "x86_64"] ?? [];
const batchedHere = unavailable === undefined;

Deno.test("udp path: without --allow-ffi the server serves on the portable path, and says why", async () => {
  await using server = await serve(SERVER_PERMISSIONS);
  assert.ok(await server.started(), server.output());
  const reply = await queryUdp("127.0.0.1", server.port, "who.example.", Type.A);
  assert.equal(reply.additional[0].data, "127.0.0.1");
  assert.match(server.output(), /udp: portable path \(Deno\.listenDatagram\): no FFI permission/);
});

Deno.test({
  name:
    "udp path: --allow-ffi limited to libc's paths (the release binary's) gives auto and -udp batched the batched path",
  ignore: !batchedHere,
  async fn() {
    for (const extra of [[], ["-udp", "batched"]]) {
      await using server = await serve(
        [...SERVER_PERMISSIONS, `--allow-ffi=${libcPaths.join(",")}`],
        extra,
      );
      assert.ok(await server.started(), server.output());
      const reply = await queryUdp("127.0.0.1", server.port, "who.example.", Type.A);
      assert.equal(reply.additional[0].data, "127.0.0.1");
      assert.match(server.output(), /udp \[::\]:\d+: batched path/);
      assert.doesNotMatch(server.output(), /portable path/);
    }
  },
});

Deno.test({
  name: "udp path: -udp portable and IDETCD_UDP=portable turn the batched path off",
  ignore: !batchedHere,
  async fn() {
    for (
      const [extra, env] of [[["-udp", "portable"], {}], [[], { [UDP_ENV]: "portable" }]] as const
    ) {
      await using server = await serve(["-A"], [...extra], { ...env });
      assert.ok(await server.started(), server.output());
      const reply = await queryUdp("127.0.0.1", server.port, "who.example.", Type.A);
      assert.equal(reply.additional[0].data, "127.0.0.1");
      assert.match(
        server.output(),
        /udp: portable path \(Deno\.listenDatagram\): (-udp|IDETCD_UDP)=portable/,
      );
      assert.doesNotMatch(server.output(), /batched path/);
    }
  },
});

Deno.test("udp path: batched asked for without the FFI permission stops the server with the reason", async () => {
  for (const [extra, env] of [[["-udp", "batched"], {}], [[], { [UDP_ENV]: "batched" }]] as const) {
    await using server = await serve(SERVER_PERMISSIONS, [...extra], { ...env });
    assert.equal(await server.started(), false, server.output());
    assert.notEqual(await server.exited, 0);
    assert.match(
      server.output(),
      /=batched, but the batched UDP path cannot be used: no FFI permission/,
    );
  }
});

Deno.test("udp path: a -udp value that is no path is a usage error (exit 2)", async () => {
  await using server = await serve(["-A"], ["-udp", "fast"]);
  assert.equal(await server.started(), false);
  assert.equal(await server.exited, 2);
  assert.match(
    server.output(),
    /invalid value "fast" for flag -udp: want auto, batched or portable/,
  );
});

Deno.test("udp path: `deno task start` grants FFI for exactly libc's paths (both architectures)", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  const flag = config.tasks.start.split(" ").find((a) => a.startsWith("--allow-ffi"));
  assert.ok(flag, "the start task has no --allow-ffi");
  assert.deepEqual(
    flag.slice("--allow-ffi=".length).split(",").sort(),
    [...new Set([...LIBC_PATHS.x86_64, ...LIBC_PATHS.aarch64])].sort(),
  );
});

Deno.test("udp: reloads that move the port close the old sockets; no descriptor leaks over ten of them", async () => {
  // On whichever path the suite runs (CI runs it on both).
  const [portA, portB] = [await freePort(), await freePort()];
  const dir = await Deno.makeTempDir({ prefix: "idetcd-udp-reload-" });
  const conf = `${dir}/Corefile`;
  const write = (port: number) => Deno.writeTextFile(conf, `.:${port} {\n    whoami\n}\n`);
  await write(portA);
  try {
    await using server = await startServer(conf);
    const fds = () => [...Deno.readDirSync(`/proc/${server.pid}/fd`)].length;
    const answers = (port: number) =>
      queryUdp("127.0.0.1", port, "r.example.", Type.A).then((m) => m.additional.length > 0);
    /** Nothing comes back within 300 ms: nobody listens there any more. */
    const silent = async (port: number) => {
      const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      try {
        await sock.send(encodeQuery(1, "r.example.", Type.A), {
          transport: "udp",
          hostname: "127.0.0.1",
          port,
        });
        let timer: ReturnType<typeof setTimeout> | undefined;
        const got = await Promise.race([
          sock.receive().then(() => true, () => false),
          new Promise<false>((r) => (timer = setTimeout(() => r(false), 300))),
        ]);
        clearTimeout(timer);
        return !got;
      } finally {
        sock.close();
      }
    };
    assert.ok(await answers(portA));
    let atA: number | undefined;
    for (let i = 1; i <= 10; i++) {
      const [to, from] = i % 2 ? [portB, portA] : [portA, portB];
      await write(to);
      server.kill("SIGHUP");
      await waitFor(
        () => server.output().split("reloaded configuration (SIGHUP)").length - 1 === i,
        { what: `reload ${i}` },
      );
      assert.ok(await answers(to), `reload ${i}: no answer on the new port`);
      assert.ok(await silent(from), `reload ${i}: the old port still answers`);
      if (to === portA) {
        // Each time the configuration is back on port A the process holds as many descriptors.
        atA ??= fds();
        assert.equal(fds(), atA, `reload ${i}: descriptors grew`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
