/**
 * Proves tests/helpers/netns.ts for real: two hosts in their own network namespaces, a real etcd
 * on the bridge's etcd address, cuts that stop etcd traffic but not the test's own, cleanup on
 * dispose and after a crash. Reported as IGNORED (with the reason) where namespaces are not
 * available, e.g. as a normal user.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  createTestNetwork,
  needsNetns,
  startEtcdOn,
  sweepStaleNetworks,
  type TestHost,
  writeHosts,
  writeResolvConf,
} from "./helpers/netns.ts";
import { waitFor } from "./helpers/wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const NETNS_MODULE = new URL("./helpers/netns.ts", import.meta.url).href;
const ECHO_PORT = 7007;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** TCP echo and a UDP echo that prefixes the number of datagrams it has received so far. */
const ECHO_SERVER = `
const port = Number(Deno.args[0]);
const tcp = Deno.listen({ hostname: "0.0.0.0", port });
const udp = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port });
const enc = new TextEncoder(), dec = new TextDecoder();
let count = 0;
(async () => { for await (const c of tcp) c.readable.pipeTo(c.writable).catch(() => {}); })();
(async () => {
  for (;;) {
    const [data, from] = await udp.receive();
    count++;
    await udp.send(enc.encode(count + ":" + dec.decode(data)), from).catch(() => {});
  }
})();
console.log(JSON.stringify({
  home: Deno.env.get("HOME") ?? null,
  denoDir: Deno.env.get("DENO_DIR") ?? null,
  addresses: Deno.networkInterfaces().filter((i) => i.family === "IPv4").map((i) => i.address),
}));
`;

/** Connects to host:port, sends a line, prints the echo; exits 2 after 5 s. */
const TCP_CLIENT = `
setTimeout(() => { console.error("timeout"); Deno.exit(2); }, 5000);
const c = await Deno.connect({ hostname: Deno.args[0], port: Number(Deno.args[1]) });
await c.write(new TextEncoder().encode("hello\\n"));
const buf = new Uint8Array(64);
const n = await c.read(buf);
console.log(new TextDecoder().decode(buf.subarray(0, n ?? 0)).trim());
Deno.exit(0);
`;

interface EchoInfo {
  home: string | null;
  denoDir: string | null;
  addresses: string[];
}

/** Starts the echo server inside `host` and waits for its ready line. */
async function startEcho(host: TestHost): Promise<{ info: EchoInfo } & AsyncDisposable> {
  const child = host.deno(["eval", "--unstable-net", ECHO_SERVER, String(ECHO_PORT)], {
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  let out = "";
  let err = "";
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const d = new TextDecoder();
    for await (const chunk of stream) add(d.decode(chunk, { stream: true }));
  };
  const pumps = Promise.all([
    pump(child.stdout, (s) => out += s),
    pump(child.stderr, (s) => err += s),
  ]);
  let exited = false;
  child.status.then(() => (exited = true));
  const dispose = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await child.status;
    await pumps;
  };
  try {
    const line = await waitFor(() => {
      if (exited) throw new Error(`echo server in ${host.name} exited: ${err}`);
      return out.split("\n").find((l) => l.startsWith("{"));
    }, { timeoutMs: 15_000, what: `echo server in ${host.name}` });
    return { info: JSON.parse(line), [Symbol.asyncDispose]: dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Sends one UDP datagram from `from` (a root-namespace address) and returns the reply. */
async function udpAsk(from: string, to: string, payload: string): Promise<string> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: from, port: 0 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sock.send(encoder.encode(payload), { transport: "udp", hostname: to, port: ECHO_PORT });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no UDP reply from ${to} to ${from}`)), 3000);
    });
    const [data] = await Promise.race([sock.receive(), timeout]);
    return decoder.decode(data);
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

/** Sends one UDP datagram from `from` and does not wait for anything. */
async function udpSend(from: string, to: string, payload: string): Promise<void> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: from, port: 0 });
  try {
    await sock.send(encoder.encode(payload), { transport: "udp", hostname: to, port: ECHO_PORT });
  } finally {
    sock.close();
  }
}

/** TCP echo from the root namespace. */
async function tcpEcho(to: string, line: string): Promise<string> {
  const conn = await Deno.connect({ hostname: to, port: ECHO_PORT });
  try {
    await conn.write(encoder.encode(line));
    const buf = new Uint8Array(256);
    const n = await conn.read(buf);
    return decoder.decode(buf.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

/** etcdctl inside a host (5 s command timeout); never throws. */
function etcdctlIn(host: TestHost, endpoint: string, ...args: string[]) {
  return etcdctlWithin("5s", host, endpoint, ...args);
}

/** etcdctl inside a host with a 1 s command timeout, for calls that should fail. */
function etcdctlShort(host: TestHost, endpoint: string, ...args: string[]) {
  return etcdctlWithin("1s", host, endpoint, ...args);
}

async function etcdctlWithin(timeout: string, host: TestHost, endpoint: string, ...args: string[]) {
  const started = performance.now();
  const out = await host.output("etcdctl", [
    `--endpoints=${endpoint}`,
    "--dial-timeout=1s",
    `--command-timeout=${timeout}`,
    ...args,
  ], { env: { ETCDCTL_API: "3" } });
  return {
    ok: out.success,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    ms: performance.now() - started,
  };
}

async function text(host: TestHost, cmd: string, ...args: string[]): Promise<string> {
  const out = await host.output(cmd, args);
  const all = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.ok(out.success, `${cmd} ${args.join(" ")} in ${host.name}: ${all}`);
  return decoder.decode(out.stdout);
}

async function ip(...args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  assert.ok(out.success, `ip ${args.join(" ")}: ${decoder.decode(out.stderr)}`);
  return decoder.decode(out.stdout);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test(needsNetns({
  name: "netns: etcd on the bridge, cut and heal one host, the test's own traffic untouched",
  async fn() {
    await using net = await createTestNetwork({ hosts: 2 });
    await using etcd = await startEtcdOn(net.etcdAddress);
    const [h1, h2] = net.hosts;
    assert.equal(h1.address, net.subnet.replace(/0\/24$/, "11"));
    assert.equal(h2.address, net.subnet.replace(/0\/24$/, "12"));
    assert.match(etcd.endpoint, new RegExp(`^http://${net.etcdAddress.replaceAll(".", "\\.")}:`));

    // No default route inside a host: only the bridge's subnet.
    const routes = await text(h1, "ip", "-4", "route", "show");
    assert.equal(routes.trim().split("\n").length, 1, routes);
    assert.match(routes, new RegExp(`^${net.subnet.replaceAll(".", "\\.")} dev eth0`));
    // Root-side traffic to the hosts leaves from the probe address.
    assert.match(
      await ip("-4", "route", "get", h1.address),
      new RegExp(`src ${net.probeAddress}\\b`),
    );

    // etcdctl inside host 1 reaches etcd on the etcd address.
    const put = await etcdctlIn(h1, etcd.endpoint, "put", "/netns/k", "v1");
    assert.ok(put.ok, put.stderr);
    const got = await etcdctlIn(h1, etcd.endpoint, "get", "--print-value-only", "/netns/k");
    assert.ok(got.ok, got.stderr);
    assert.equal(got.stdout.trim(), "v1");
    assert.equal((await etcd.ctl("get", "--print-value-only", "/netns/k")).trim(), "v1");

    // A Deno process inside host 1: same HOME/DENO_DIR, sees only the namespace's interfaces.
    await using echo1 = await startEcho(h1);
    assert.equal(echo1.info.home, Deno.env.get("HOME") ?? null);
    assert.equal(echo1.info.denoDir, Deno.env.get("DENO_DIR") ?? null);
    assert.deepEqual(echo1.info.addresses.sort(), ["127.0.0.1", h1.address].sort());
    await using _echo2 = await startEcho(h2);
    // ...and the project's npm packages are found in the same module cache (no download allowed).
    const cached = await h1.output(Deno.execPath(), [
      "eval",
      "--cached-only",
      'import packet from "dns-packet"; console.log(typeof packet.encode);',
    ], { cwd: ROOT });
    assert.ok(cached.success, decoder.decode(cached.stderr));
    assert.equal(decoder.decode(cached.stdout).trim(), "function");

    assert.equal(await tcpEcho(h1.address, "before\n"), "before\n");
    assert.equal(await udpAsk(net.probeAddress, h1.address, "one"), "1:one");

    // Cut host 1 from the etcd address.
    await h1.cutFrom(net.etcdAddress);
    const cut = await etcdctlShort(h1, etcd.endpoint, "get", "/netns/k");
    assert.ok(!cut.ok, `etcdctl worked through the cut: ${cut.stdout}`);
    assert.ok(cut.ms < 3000, `etcdctl took ${cut.ms} ms to fail`);
    // The test's own traffic from the probe address still reaches host 1, TCP and UDP.
    assert.equal(await tcpEcho(h1.address, "during\n"), "during\n");
    // A datagram from the etcd address is dropped on the way in: the next one from the probe
    // address is the second the server ever saw.
    await udpSend(net.etcdAddress, h1.address, "from-etcd");
    assert.equal(await udpAsk(net.probeAddress, h1.address, "two"), "2:two");
    // Host 1 still reaches host 2; host 2 and the root namespace still reach etcd.
    assert.equal(
      (await text(h1, Deno.execPath(), "eval", TCP_CLIENT, h2.address, String(ECHO_PORT))).trim(),
      "hello",
    );
    const fromH2 = await etcdctlIn(h2, etcd.endpoint, "get", "--print-value-only", "/netns/k");
    assert.ok(fromH2.ok, fromH2.stderr);
    assert.equal((await etcd.ctl("get", "--print-value-only", "/netns/k")).trim(), "v1");

    // Heal: etcdctl in host 1 works again at once.
    await h1.heal();
    const healed = await etcdctlIn(h1, etcd.endpoint, "put", "/netns/k", "v2");
    assert.ok(healed.ok, healed.stderr);
    assert.equal((await etcd.ctl("get", "--print-value-only", "/netns/k")).trim(), "v2");

    // A port cut: etcd's client port only; other traffic from the etcd address passes.
    await h1.cutFrom(net.etcdAddress, etcd.clientPort);
    const portCut = await etcdctlShort(h1, etcd.endpoint, "get", "/netns/k");
    assert.ok(!portCut.ok, `etcdctl worked through the port cut: ${portCut.stdout}`);
    assert.equal(await udpAsk(net.etcdAddress, h1.address, "three"), "3:three");
    await h1.heal();
    assert.ok((await etcdctlIn(h1, etcd.endpoint, "get", "/netns/k")).ok);

    // Per-host resolv.conf and hosts, seen by processes started afterwards, in host 1 only.
    await writeResolvConf(h1, net.probeAddress);
    await writeHosts(h1, { "etcd.test": net.etcdAddress });
    assert.equal(await text(h1, "cat", "/etc/resolv.conf"), `nameserver ${net.probeAddress}\n`);
    assert.doesNotMatch(await text(h2, "cat", "/etc/resolv.conf"), new RegExp(net.probeAddress));
    assert.match(
      await text(h1, "getent", "hosts", "etcd.test"),
      new RegExp(`^${net.etcdAddress}\\s`),
    );
    // dig inside host 1 asks that nameserver (nothing listens there: refused, and says where).
    const digOut = await h1.output("dig", ["+time=1", "+tries=1", "example.org"]);
    assert.match(
      decoder.decode(digOut.stdout) + decoder.decode(digOut.stderr),
      new RegExp(`${net.probeAddress.replaceAll(".", "\\.")}#53`),
    );
  },
}));

Deno.test(needsNetns({
  name: "netns: dispose leaves no namespace, link, route, /etc/netns folder or rule",
  async fn() {
    const net = await createTestNetwork({ hosts: 2, forwardRule: "always" });
    let disposed = false;
    try {
      await writeResolvConf(net.hosts[0], net.probeAddress);
      const etcDir = `/etc/netns/${net.hosts[0].name}`;
      assert.equal(net.namespaces.length, 2);
      assert.equal(net.links.length, 3);
      for (const name of [...net.links, ...net.namespaces]) {
        assert.ok(name.length <= 15, `${name} is longer than 15 chars`);
        assert.ok(name.startsWith(net.id));
      }
      const nsList = await ip("netns", "list");
      for (const ns of net.namespaces) assert.match(nsList, new RegExp(`^${ns}\\b`, "m"));
      const links = await ip("-o", "link", "show");
      for (const link of net.links) assert.ok(links.includes(`: ${link}`), `${link} missing`);
      assert.ok(exists(etcDir));
      const forward = await new Deno.Command("iptables-nft", { args: ["-w", "-S", "FORWARD"] })
        .output();
      assert.ok(decoder.decode(forward.stdout).includes(net.id), "FORWARD rule missing");

      await net.dispose();
      disposed = true;
      await net.dispose(); // idempotent

      assert.doesNotMatch(await ip("netns", "list"), new RegExp(net.id));
      assert.doesNotMatch(await ip("-o", "link", "show"), new RegExp(net.id));
      assert.doesNotMatch(await ip("-4", "route", "show"), new RegExp(net.subnet.split("/")[0]));
      assert.ok(!exists(etcDir), `${etcDir} still exists`);
      const after = await new Deno.Command("iptables-nft", { args: ["-w", "-S", "FORWARD"] })
        .output();
      assert.ok(!decoder.decode(after.stdout).includes(net.id), "FORWARD rule left behind");
      assert.ok(!exists(`/run/idetcd-netns/${net.id}.json`));
    } finally {
      if (!disposed) await net.dispose();
    }
  },
}));

Deno.test(needsNetns({
  name: "netns: Deno.exit cleans up on unload; a SIGKILLed owner's network is swept",
  async fn() {
    const child = `
    import { createTestNetwork, writeResolvConf } from ${JSON.stringify(NETNS_MODULE)};
    const net = await createTestNetwork({ hosts: 1 });
    await writeResolvConf(net.hosts[0], net.probeAddress);
    console.log(JSON.stringify({ id: net.id, namespaces: net.namespaces, links: net.links }));
    if (Deno.args[0] === "exit") Deno.exit(0);
    setInterval(() => {}, 1000);
  `;
    const spawn = (mode: string) =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", child, mode],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
    type Made = { id: string; namespaces: string[]; links: string[] };
    const left = async (made: Made) => {
      const all = await ip("netns", "list") + await ip("-o", "link", "show");
      return [...made.namespaces, ...made.links].filter((name) => all.includes(name)).concat(
        made.namespaces.filter((ns) => exists(`/etc/netns/${ns}`)).map((ns) => `/etc/netns/${ns}`),
      );
    };

    // Deno.exit: the unload handler deletes everything.
    const exiting = await spawn("exit").output();
    assert.ok(exiting.success, decoder.decode(exiting.stderr));
    const made1: Made = JSON.parse(decoder.decode(exiting.stdout));
    assert.deepEqual(await left(made1), []);

    // SIGKILL: everything stays until a sweep, which removes it since the owner is dead.
    const killed = spawn("wait");
    let out = "";
    const pump = (async () => {
      for await (const chunk of killed.stdout) out += decoder.decode(chunk, { stream: true });
    })();
    const errPump = new Response(killed.stderr).text();
    let made2: Made;
    try {
      const line = await waitFor(() => out.split("\n").find((l) => l.startsWith("{")), {
        timeoutMs: 20_000,
        what: "the child's network",
      });
      made2 = JSON.parse(line);
    } finally {
      killed.kill("SIGKILL");
      await killed.status;
      await pump;
      await errPump;
    }
    assert.equal((await left(made2)).length, 4, "the killed child's network should still exist");
    const report = await sweepStaleNetworks();
    for (const ns of made2.namespaces) assert.ok(report.namespaces.includes(ns), ns);
    assert.ok(report.owners.includes(made2.id));
    assert.deepEqual(await left(made2), []);
  },
}));
