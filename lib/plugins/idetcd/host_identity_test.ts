import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCorefile } from "../../corefile/parser.ts";
import { CorefileError } from "../../corefile/types.ts";
import { createLogger, type Level } from "../../log.ts";
import type { Claimed } from "./claim.ts";
import {
  cleanHosts,
  HostIdentity,
  hostNames,
  type HostSystem,
  machineHostname,
  presentHosts,
  writeFileAtomic,
} from "./host_identity.ts";
import { parseIdetcd } from "./setup.ts";

const DEBIAN = [
  "127.0.0.1\tlocalhost",
  "127.0.1.1\tdebian-host.example.net\tdebian-host",
  "",
  "# The following lines are desirable for IPv6 capable hosts",
  "::1     localhost ip6-localhost ip6-loopback",
  "ff02::1 ip6-allnodes",
  "",
].join("\n");

Deno.test("host identity: names of a claim (short label, FQDN without the dot)", () => {
  assert.deepEqual(hostNames("Worker4.tf.local."), { short: "worker4", fqdn: "worker4.tf.local" });
  assert.deepEqual(hostNames("solo."), { short: "solo", fqdn: "solo" });
});

Deno.test("host identity: the node's line replaces Debian's 127.0.1.1 line and the undo restores it byte for byte", () => {
  const change = { set: "worker4", previous: "debian-host" };
  const text = presentHosts(DEBIAN, "worker4.tf.local.", ["10.0.0.4", "2001:db8::4"], change);
  assert.equal(
    text,
    [
      "127.0.0.1\tlocalhost",
      "10.0.0.4\tworker4.tf.local\tworker4\t# idetcd",
      "2001:db8::4\tworker4.tf.local\tworker4\t# idetcd",
      "# idetcd: hostname worker4, previously debian-host",
      "#127.0.1.1\tdebian-host.example.net\tdebian-host\t# idetcd: replaced",
      "",
      "# The following lines are desirable for IPv6 capable hosts",
      "::1     localhost ip6-localhost ip6-loopback",
      "ff02::1 ip6-allnodes",
      "",
    ].join("\n"),
  );
  const clean = cleanHosts(text);
  assert.equal(clean.text, DEBIAN);
  assert.deepEqual(clean.hostname, change);
  assert.equal(clean.changed, true);
  assert.deepEqual(cleanHosts(DEBIAN), { text: DEBIAN, hostname: undefined, changed: false });
  // Presenting again (or another name) starts from the clean text: one set of lines, never two.
  const again = presentHosts(text, "worker5.tf.local.", ["10.0.0.5"], change);
  assert.equal(again.split("\n").filter((l) => l.endsWith("# idetcd")).length, 1);
  assert.equal(cleanHosts(again).text, DEBIAN);
});

Deno.test("host identity: without a 127.0.1.1 line the line goes before the address's other lines, else at the end", () => {
  const cloud = "127.0.0.1 localhost\n10.0.0.4 vm.c.project.internal vm  # Added by Google\n";
  const text = presentHosts(cloud, "worker4.tf.local.", ["10.0.0.4"]);
  assert.equal(
    text,
    "127.0.0.1 localhost\n10.0.0.4\tworker4.tf.local\tworker4\t# idetcd\n10.0.0.4 vm.c.project.internal vm  # Added by Google\n",
  );
  assert.equal(cleanHosts(text).text, cloud);
  const bare = "127.0.0.1 localhost\n127.0.0.1 vm\n";
  const appended = presentHosts(bare, "worker4.tf.local.", ["10.0.0.4"]);
  assert.equal(appended, bare + "10.0.0.4\tworker4.tf.local\tworker4\t# idetcd\n");
  assert.equal(cleanHosts(appended).text, bare);
  // A user's own line that merely mentions idetcd in a comment is not the node's.
  const own = "10.9.9.9 build # idetcd's build box\n";
  assert.equal(cleanHosts(own).text, own);
});

/** A machine in memory: the hosts file is a real temp file, the hostname a variable. */
function fakeMachine(hosts: string, hostname: string, failSet = false) {
  const dir = Deno.makeTempDirSync();
  const hostsPath = join(dir, "hosts");
  Deno.writeTextFileSync(hostsPath, hosts);
  const lines: string[] = [];
  const system: HostSystem & { name: string; sets: string[] } = {
    hostsPath,
    name: hostname,
    sets: [],
    getHostname() {
      return this.name;
    },
    setHostname(name) {
      if (failSet) throw new Error("hostname: you must be root to change the host name");
      this.sets.push(name);
      this.name = name;
    },
  };
  const log = createLogger("plugin/idetcd", (_l: Level, line) => lines.push(line));
  return {
    dir,
    system,
    lines,
    host: new HostIdentity(log, system),
    hosts: () => Deno.readTextFileSync(hostsPath),
    [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }),
  };
}

function claimed(id: number, addresses = [`10.0.0.${id}`]): Claimed {
  return {
    id,
    name: `worker${id}.tf.local.`,
    key: `/skydns/local/tf/worker${id}`,
    addresses,
    identity: "test",
    leaseId: "1",
    leaseSeconds: 20,
    createRevision: 10,
    revision: 10,
    claimedAt: new Date().toISOString(),
  };
}

Deno.test("host identity: held presents, fenced / lost / stopped undo; the same claim again changes nothing", () => {
  using m = fakeMachine(DEBIAN, "debian-host");
  const c = claimed(4);
  m.host.update({ kind: "held", claimed: c });
  assert.equal(m.system.name, "worker4");
  assert.match(m.hosts(), /^10\.0\.0\.4\tworker4\.tf\.local\tworker4\t# idetcd$/m);
  assert.ok(
    m.lines.some((l) =>
      l === "[INFO] plugin/idetcd: hostname worker4 (was debian-host); " +
          `${m.system.hostsPath}: 10.0.0.4 worker4.tf.local worker4`
    ),
    m.lines.join("\n"),
  );
  const presented = m.hosts();
  m.host.update({ kind: "held", claimed: { ...c, leaseId: "2" } });
  assert.deepEqual(m.system.sets, ["worker4"], "no second hostname call");
  assert.equal(m.hosts(), presented);
  for (const kind of ["fenced", "claiming", "stopped"] as const) {
    m.host.update({ kind: "held", claimed: c });
    m.host.update(kind === "fenced" ? { kind, claimed: c, reason: "x" } : { kind, reason: "x" });
    assert.equal(m.system.name, "debian-host", kind);
    assert.equal(m.hosts(), DEBIAN, kind);
  }
  // Nothing to undo: no change, no log line.
  const before = m.lines.length;
  m.host.update({ kind: "waiting", reason: "full" });
  assert.equal(m.lines.length, before);
});

Deno.test("host identity: a killed run's leftovers are undone at the next start, with the hostname it replaced", () => {
  using m = fakeMachine(DEBIAN, "debian-host");
  new HostIdentity(createLogger("x", () => {}), m.system).update({
    kind: "held",
    claimed: claimed(4),
  });
  // The process was killed: a new one starts and finds the file and hostname as left.
  assert.equal(m.system.name, "worker4");
  m.host.update({ kind: "starting" });
  assert.equal(m.system.name, "debian-host");
  assert.equal(m.hosts(), DEBIAN);
  // Killed again, and the next run claims another ID straight away: the old hostname is still the one to restore.
  new HostIdentity(createLogger("x", () => {}), m.system).update({
    kind: "held",
    claimed: claimed(4),
  });
  m.host.update({ kind: "held", claimed: claimed(7) });
  assert.equal(m.system.name, "worker7");
  assert.match(m.hosts(), /# idetcd: hostname worker7, previously debian-host/);
  assert.doesNotMatch(m.hosts(), /worker4/);
  m.host.withdraw("released");
  assert.equal(m.system.name, "debian-host");
  assert.equal(m.hosts(), DEBIAN);
});

Deno.test("host identity: a hostname changed by someone else meanwhile is left alone", () => {
  using m = fakeMachine(DEBIAN, "debian-host");
  m.host.present("worker4.tf.local.", ["10.0.0.4"]);
  m.system.name = "renamed-by-admin";
  m.host.withdraw("released");
  assert.equal(m.system.name, "renamed-by-admin");
  assert.equal(m.hosts(), DEBIAN);
  assert.ok(
    m.lines.some((l) => l.includes("renamed-by-admin was set meanwhile")),
    m.lines.join("\n"),
  );
});

Deno.test("host identity: no permission to set the hostname is one error line and /etc/hosts stays as it was", () => {
  using m = fakeMachine(DEBIAN, "debian-host", true);
  m.host.present("worker4.tf.local.", ["10.0.0.4"]);
  assert.equal(m.system.name, "debian-host");
  assert.equal(m.hosts(), DEBIAN);
  const errors = m.lines.filter((l) => l.startsWith("[ERROR]"));
  assert.deepEqual(errors, [
    "[ERROR] plugin/idetcd: hostname: cannot set the hostname to worker4: hostname: you must be root to change the host name; " +
    `it stays debian-host and ${m.system.hostsPath} is left as it was`,
  ]);
  m.host.withdraw("released");
  assert.equal(m.hosts(), DEBIAN);
});

Deno.test("host identity: an unreadable hosts file is one error line and the hostname is not changed", () => {
  using m = fakeMachine(DEBIAN, "debian-host");
  const system = { ...m.system, hostsPath: join(m.dir, "missing", "hosts") };
  const lines: string[] = [];
  const host = new HostIdentity(createLogger("p", (_l, line) => lines.push(line)), system);
  host.present("worker4.tf.local.", ["10.0.0.4"]);
  assert.equal(m.system.name, "debian-host");
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(
    lines[0],
    /^\[ERROR\] p: hostname: cannot read .*missing\/hosts: .*; not presenting worker4\.tf\.local$/,
  );
  host.withdraw("released");
  assert.equal(lines.length, 1, "nothing was presented, so nothing is undone");
});

Deno.test("host identity: files are replaced atomically with their mode kept", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = join(dir, "hosts");
    Deno.writeTextFileSync(path, "old\n");
    Deno.chmodSync(path, 0o640);
    const inode = Deno.statSync(path).ino;
    writeFileAtomic(path, "new\n");
    assert.equal(Deno.readTextFileSync(path), "new\n");
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o640);
    assert.notEqual(Deno.statSync(path).ino, inode, "a new file was renamed into place");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["hosts"], "no temporary left");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("host identity: the machine's own hostname is the replaced one while a name is presented", () => {
  const text = presentHosts(DEBIAN, "worker4.tf.local.", ["10.0.0.4"], {
    set: "worker4",
    previous: "debian-host",
  });
  assert.equal(machineHostname("worker4", text), "debian-host");
  assert.equal(machineHostname("renamed", text), "renamed");
  assert.equal(machineHostname("debian-host", DEBIAN), "debian-host");
});

Deno.test("host identity: the `hostname` directive (off unless given; no arguments)", () => {
  const parse = (body: string) => {
    const blocks = parseCorefile(
      `. {\n  idetcd {\n    pattern worker{{.ID}}.tf.local.\n${body}\n  }\n}\n`,
      "Corefile",
      { isDirective: (n) => n === "idetcd" },
    );
    return parseIdetcd(blocks[0].directives, "/etc/coredns");
  };
  assert.equal(parse("").hostname, false);
  assert.equal(parse("    hostname").hostname, true);
  assert.throws(
    () => parse("    hostname fqdn"),
    (err: Error) =>
      err instanceof CorefileError &&
      err.describe() ===
        "plugin/idetcd: Corefile:4 - Error during parsing: hostname takes no arguments, got 'fqdn'",
  );
});
