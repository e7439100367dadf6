/**
 * The idetcd `hostname` option on a real machine's hostname and /etc/hosts,
 * against a real etcd and real `main.ts` processes. None of it touches this
 * machine's own hostname or /etc/hosts: every node runs in private UTS and
 * mount namespaces (`unshare --uts --mount`) over a private copy of /etc,
 * entered with `nsenter`; the checks (`hostname`, `getent hosts`, Python's
 * socket module) run in the same namespaces. Where that cannot be done (not
 * Linux, not root, a tool missing) the tests are ignored with the reason.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type EtcdAccess, type EtcdScope, sharedEtcd, startEtcd } from "./helpers/etcd.ts";
import { dig } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ADDRESS = "10.77.0.4";
const FQDN = "worker1.tf.local";
const OLD = "debian-host";
/** Debian's /etc/hosts, as its installer writes it. */
const DEBIAN_HOSTS = [
  "127.0.0.1\tlocalhost",
  `127.0.1.1\t${OLD}.example.net\t${OLD}`,
  "",
  "# The following lines are desirable for IPv6 capable hosts",
  "::1     localhost ip6-localhost ip6-loopback",
  "ff02::1 ip6-allnodes",
  "ff02::2 ip6-allrouters",
  "",
].join("\n");
const PYTHON = "import socket; print(socket.getfqdn(), socket.gethostbyname(socket.gethostname()))";

function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why namespaced host tests cannot run here, or undefined when they can (probed for real). */
function whyNot(): string | undefined {
  if (Deno.build.os !== "linux") {
    return `UTS and mount namespaces need Linux, this is ${Deno.build.os}`;
  }
  if (Deno.uid() !== 0) {
    return `needs root (CAP_SYS_ADMIN for unshare and nsenter), uid is ${Deno.uid()}`;
  }
  for (const tool of ["unshare", "nsenter", "hostname", "getent", "etcd", "dig"]) {
    if (!which(tool)) return `\`${tool}\` is not installed`;
  }
  const dir = Deno.makeTempDirSync({ prefix: "idetcd-hostns-probe-" });
  try {
    Deno.mkdirSync(join(dir, "a"));
    Deno.mkdirSync(join(dir, "b"));
    const probe = new Deno.Command("unshare", {
      args: [
        "--uts",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$1" "$2" && hostname idetcd-probe && [ "$(hostname)" = idetcd-probe ]',
        "sh",
        join(dir, "a"),
        join(dir, "b"),
      ],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!probe.success) {
      return `unshare --uts --mount failed: ${new TextDecoder().decode(probe.stderr).trim()}`;
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  return undefined;
}

const REASON = whyNot();
if (REASON) console.warn(`host identity tests are ignored: ${REASON}`);

/** A test that needs the namespaces: ignored, with the reason in its name, where they are not available. */
function hostTest(name: string, fn: () => Promise<void>, needs: string[] = []): void {
  const missing = needs.find((tool) => !which(tool));
  const reason = REASON ?? (missing ? `\`${missing}\` is not installed` : undefined);
  Deno.test({
    name: reason ? `${name} (ignored: ${reason})` : name,
    ignore: reason !== undefined,
    fn,
  });
}

/** A process with its output collected. */
interface Proc {
  readonly pid: number;
  output(): string;
  waitForOutput(want: RegExp, timeoutMs?: number): Promise<void>;
  kill(signal: Deno.Signal): void;
  readonly exited: Promise<number>;
}

function spawn(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
  // Found on this process's PATH: `env` may give the child another one.
  const child = new Deno.Command(which(cmd) ?? cmd, {
    args,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let code: number | undefined;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const exited = child.status.then(async (s) => {
    await pumps;
    code = s.code;
    return s.code;
  });
  return {
    pid: child.pid,
    output: () => text,
    async waitForOutput(want, timeoutMs = 30_000) {
      await waitFor(() => {
        if (want.test(text)) return true;
        if (code !== undefined) throw new Error(`exited with ${code} before ${want}:\n${text}`);
        return false;
      }, { timeoutMs, what: `${want} in:\n${text}` });
    },
    kill(signal) {
      try {
        child.kill(signal);
      } catch {
        // gone already
      }
    },
    exited,
  };
}

/**
 * A private "machine": UTS and mount namespaces held open by a sleeping
 * process, with a private copy of /etc mounted on /etc whose hostname is
 * `debian-host` and whose hosts file is Debian's. With `container`, the hosts
 * file is itself a bind mount (as Docker and systemd's ReadWritePaths make
 * it), so it cannot be replaced by a rename.
 */
class Machine implements AsyncDisposable {
  readonly dir: string;
  readonly holder: Proc;
  readonly #servers: Proc[] = [];

  private constructor(dir: string, holder: Proc) {
    this.dir = dir;
    this.holder = holder;
  }

  static async create(options: { container?: boolean } = {}): Promise<Machine> {
    const dir = await Deno.makeTempDir({ prefix: "idetcd-hostns-" });
    const etc = join(dir, "etc");
    const cp = await new Deno.Command("cp", { args: ["-a", "/etc", etc], stderr: "piped" })
      .output();
    if (!cp.success) throw new Error(`cp -a /etc: ${new TextDecoder().decode(cp.stderr)}`);
    await Deno.writeTextFile(join(etc, "hosts"), DEBIAN_HOSTS);
    await Deno.writeTextFile(join(etc, "hostname"), `${OLD}\n`);
    const mounted = join(dir, "hosts.mounted");
    if (options.container) await Deno.writeTextFile(mounted, DEBIAN_HOSTS);
    const script = [
      "set -e",
      'mount --bind "$1" /etc',
      'if [ -n "$2" ]; then mount --bind "$2" /etc/hosts; fi',
      'hostname "$(cat /etc/hostname)"',
      "echo namespaces-ready",
      "exec sleep 86400",
    ].join("\n");
    const holder = spawn("unshare", [
      "--uts",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      script,
      "sh",
      etc,
      options.container ? mounted : "",
    ]);
    await holder.waitForOutput(/^namespaces-ready$/m, 10_000);
    return new Machine(dir, holder);
  }

  /** The backing file of the bind-mounted /etc/hosts (`container` only). */
  get mountedHosts(): string {
    return join(this.dir, "hosts.mounted");
  }

  #enter(): string[] {
    return ["-t", String(this.holder.pid), "--uts", "--mount", "--"];
  }

  /** Runs a shell script inside; returns stdout (trimmed); throws on a non-zero exit. */
  async sh(script: string): Promise<string> {
    const out = await new Deno.Command(which("nsenter") ?? "nsenter", {
      args: [...this.#enter(), "sh", "-c", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim();
    if (!out.success) {
      throw new Error(
        `${script}: exit ${out.code}: ${stdout}${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return stdout;
  }

  /** The hostname inside. */
  hostname(): Promise<string> {
    return this.sh("hostname");
  }

  /** /etc/hosts inside. */
  hosts(): Promise<string> {
    return this.sh("cat /etc/hosts; echo .").then((t) => t.replace(/\.$/, ""));
  }

  /** Starts `main.ts -conf conf` inside, optionally behind `wrapper` (e.g. setpriv). */
  server(conf: string, env: Record<string, string>, wrapper: string[] = []): Proc {
    const proc = spawn(
      "nsenter",
      [...this.#enter(), ...wrapper, Deno.execPath(), "run", "-A", MAIN, "-conf", conf],
      env,
    );
    this.#servers.push(proc);
    return proc;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.#servers) s.kill("SIGKILL");
    await Promise.all(this.#servers.map((s) => s.exited));
    this.holder.kill("SIGKILL");
    await this.holder.exited;
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** This machine's own hostname and /etc/hosts, to show that no test changed them. */
function realHost(): { hostname: string; hosts: string } {
  return { hostname: Deno.hostname(), hosts: Deno.readTextFileSync("/etc/hosts") };
}

/** The etcd of the tests that do not stop it, each under its own key prefix. */
const shared = sharedEtcd();

async function corefile(
  dir: string,
  etcd: EtcdAccess & Partial<Pick<EtcdScope, "prefix">>,
  port: number,
  extra = "",
): Promise<string> {
  const path = join(dir, "Corefile");
  await Deno.writeTextFile(
    path,
    `.:${port} {
  bind 127.0.0.1
  idetcd {
    endpoint ${etcd.endpoint}${etcd.prefix === undefined ? "" : `\n    prefix ${etcd.prefix}`}
    pattern worker{{.ID}}.tf.local.
    limit 3
    address ${ADDRESS}
    identity host-identity-test
    lease 2s
    hostname${extra ? `\n    ${extra}` : ""}
  }
}
`,
  );
  return path;
}

function env(dir: string, more: Record<string, string> = {}): Record<string, string> {
  return { IDETCD_RUNTIME_DIR: join(dir, "run"), ...more };
}

/** What the machine shows while it presents worker1.tf.local. */
async function assertPresented(m: Machine): Promise<void> {
  assert.equal(await m.hostname(), "worker1");
  assert.equal(await m.sh("hostname -f"), FQDN);
  assert.match(
    await m.sh("getent hosts $(hostname)"),
    new RegExp(`^${ADDRESS}\\s+${FQDN}\\s+worker1$`),
  );
  assert.equal(await m.sh(`python3 -c '${PYTHON}'`), `${FQDN} ${ADDRESS}`);
  const hosts = await m.hosts();
  assert.equal(hosts.split("\n").filter((l) => l.endsWith("# idetcd")).length, 1, hosts);
  assert.match(hosts, new RegExp(`^${ADDRESS}\\t${FQDN}\\tworker1\\t# idetcd$`, "m"));
  assert.match(hosts, /^#127\.0\.1\.1\t.*\t# idetcd: replaced$/m);
  assert.doesNotMatch(hosts, /^127\.0\.1\.1/m, "Debian's line is replaced");
}

/** What the machine shows once nothing is presented: its own name, Debian's hosts file byte for byte. */
async function assertOwn(m: Machine): Promise<void> {
  assert.equal(await m.hostname(), OLD);
  assert.equal(await m.hosts(), DEBIAN_HOSTS);
  assert.equal(await m.sh(`python3 -c '${PYTHON}'`), `${OLD}.example.net 127.0.1.1`);
}

hostTest(
  "hostname: while held, hostname / getent / Python give the claimed name and address; SIGTERM gives the old ones back",
  async () => {
    const real = realHost();
    const etcd = await shared.scope();
    await using m = await Machine.create();
    const port = await freePort();
    const conf = await corefile(m.dir, etcd, port);
    const server = m.server(conf, env(m.dir));
    await server.waitForOutput(/claimed worker1\.tf\.local\. \(ID 1\)/);
    await server.waitForOutput(
      /\[INFO\] plugin\/idetcd: hostname worker1 \(was debian-host\); \/etc\/hosts: 10\.77\.0\.4 worker1\.tf\.local worker1/,
    );
    await assertPresented(m);
    await server.waitForOutput(/^idetcd-\d/m); // the listeners are open
    // DNS is served as ever.
    assert.equal(
      (await dig(`@127.0.0.1`, "-p", String(port), "+short", `${FQDN}.`, "A")).trim(),
      ADDRESS,
    );
    // The atomic path: /etc/hosts is a plain file of the private /etc, replaced by a rename; no temporary left.
    assert.deepEqual(
      await m.sh("ls -a /etc | grep -c '^\\.hosts\\.idetcd' || true"),
      "0",
      "no temporary file left in /etc",
    );
    assert.deepEqual(realHost(), real, "this machine's own hostname and /etc/hosts are untouched");

    server.kill("SIGTERM");
    assert.equal(await server.exited, 0, server.output());
    assert.match(server.output(), /released worker1\.tf\.local\. \(ID 1\)/);
    assert.match(
      server.output(),
      /hostname: back to debian-host; \/etc\/hosts: the node's line removed/,
    );
    await assertOwn(m);
    assert.deepEqual(realHost(), real);
  },
  ["python3"],
);

hostTest(
  "hostname: fenced (etcd stopped) gives the old hostname back; etcd back, the name is presented again (via /proc/sys/kernel/hostname)",
  async () => {
    const real = realHost();
    await using etcd = await startEtcd();
    await using m = await Machine.create();
    const port = await freePort();
    const conf = await corefile(m.dir, etcd, port);
    // No `hostname` or `hostnamectl` on PATH: the kernel's file is written instead.
    const server = m.server(conf, env(m.dir, { PATH: "/nonexistent" }));
    await server.waitForOutput(/hostname worker1 \(was debian-host\)/);
    await assertPresented(m);

    await etcd.stop();
    await server.waitForOutput(
      /hostname: back to debian-host; \/etc\/hosts: the node's line removed \(fenced\)/,
      10_000,
    );
    assert.match(server.output(), /stopped vouching for worker1\.tf\.local\./);
    await assertOwn(m);

    await etcd.start();
    await waitFor(async () => (await m.hostname()) === "worker1", {
      timeoutMs: 20_000,
      what: "the claimed hostname again once etcd answers",
    });
    await assertPresented(m);
    server.kill("SIGTERM");
    assert.equal(await server.exited, 0, server.output());
    await assertOwn(m);
    assert.deepEqual(realHost(), real);
  },
  ["python3"],
);

hostTest(
  "hostname: a bind-mounted /etc/hosts (containers) is rewritten in place; a SIGKILLed node's changes are undone by its next run",
  async () => {
    const real = realHost();
    const etcd = await shared.scope();
    await using m = await Machine.create({ container: true });
    const port = await freePort();
    const conf = await corefile(m.dir, etcd, port);
    const first = m.server(conf, env(m.dir));
    await first.waitForOutput(/hostname worker1 \(was debian-host\)/);
    await assertPresented(m);
    // Written through the mount, into the file mounted there (a rename onto a mount point fails).
    assert.match(
      await Deno.readTextFile(m.mountedHosts),
      /^10\.77\.0\.4\tworker1\.tf\.local\tworker1\t# idetcd$/m,
    );

    first.kill("SIGKILL");
    await first.exited;
    assert.equal(await m.hostname(), "worker1", "a killed node cannot undo anything");

    const second = m.server(conf, env(m.dir));
    await second.waitForOutput(
      /hostname: back to debian-host; \/etc\/hosts: the node's line removed \(starting\)/,
    );
    await second.waitForOutput(/hostname worker1 \(was debian-host\)/);
    await assertPresented(m);
    assert.match(await m.hosts(), /^# idetcd: hostname worker1, previously debian-host$/m);
    second.kill("SIGTERM");
    assert.equal(await second.exited, 0, second.output());
    await assertOwn(m);
    assert.equal(await Deno.readTextFile(m.mountedHosts), DEBIAN_HOSTS);
    assert.deepEqual(realHost(), real);
  },
  ["python3"],
);

hostTest(
  "hostname: without permission to set the hostname one error line is logged, /etc/hosts is left alone and DNS is served",
  async () => {
    const real = realHost();
    const etcd = await shared.scope();
    await using m = await Machine.create();
    const port = await freePort();
    const conf = await corefile(m.dir, etcd, port);
    // CAP_SYS_ADMIN dropped: sethostname(2) is refused, as under systemd's ProtectHostname or in a plain container.
    const server = m.server(conf, env(m.dir), [
      "setpriv",
      "--bounding-set=-sys_admin",
      "--inh-caps=-sys_admin",
    ]);
    await server.waitForOutput(/claimed worker1\.tf\.local\. \(ID 1\)/);
    await server.waitForOutput(/^idetcd-\d/m); // the listeners are open
    await server.waitForOutput(/\[ERROR\] plugin\/idetcd: hostname: /);
    const errors = server.output().split("\n").filter((l) => l.includes("[ERROR]"));
    assert.equal(errors.length, 1, server.output());
    assert.match(
      errors[0],
      /^\[ERROR\] plugin\/idetcd: hostname: cannot set the hostname to worker1: hostname worker1: .+; it stays debian-host and \/etc\/hosts is left as it was$/,
    );
    assert.equal(await m.hostname(), OLD);
    assert.equal(await m.hosts(), DEBIAN_HOSTS);
    assert.equal(
      (await dig(`@127.0.0.1`, "-p", String(port), "+short", `${FQDN}.`, "A")).trim(),
      ADDRESS,
    );
    server.kill("SIGTERM");
    assert.equal(await server.exited, 0, server.output());
    assert.equal(await m.hosts(), DEBIAN_HOSTS);
    assert.deepEqual(realHost(), real);
  },
  ["setpriv"],
);
