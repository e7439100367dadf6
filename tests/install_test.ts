/**
 * deploy/install.sh, run for real with `sh` into a temporary --root against a
 * file:// "release" (a fake binary and its SHA256SUMS), and scripts/compile.ts's
 * plan and its run against a stand-in runtime base (DENORT_BIN), never a download.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { lex } from "../lib/corefile/lexer.ts";
import { parseCorefile } from "../lib/corefile/parser.ts";
import { parseIdetcd } from "../lib/plugins/idetcd/setup.ts";
import { isDirective } from "../plugins.ts";
import {
  binaryName,
  classifyDenortBin,
  CLI_MARKER,
  compileArgs,
  denortFailure,
  formatChecksums,
  planCompile,
  RELEASE_TARGETS,
  UsageError,
} from "../scripts/compile.ts";

const INSTALL_SH = fileURLToPath(new URL("../deploy/install.sh", import.meta.url));
const COMPILE_TS = fileURLToPath(new URL("../scripts/compile.ts", import.meta.url));
/** The binary the tests fetch, whatever this machine is (the unit is written for Linux targets). */
const TARGET = "x86_64-unknown-linux-gnu";
const ASSET = `idetcd-${TARGET}`;
const FAKE_BINARY = '#!/bin/sh\necho "fake idetcd $*"\n';

const BASIC = [
  "--endpoints",
  "http://192.0.2.1:2379,http://192.0.2.2:2379",
  "--limit",
  "5",
  "--pattern",
  "worker{{.ID}}.tf.local.",
];

async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A temporary folder holding a release (`rel/`) and an empty install root (`root/`). */
async function fixture(options: { tamper?: boolean; asset?: string } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-install-test-" });
  const rel = `${dir}/rel`;
  const root = `${dir}/root`;
  await Deno.mkdir(rel);
  await Deno.mkdir(root);
  const asset = options.asset ?? ASSET;
  await Deno.writeTextFile(`${rel}/${asset}`, FAKE_BINARY + (options.tamper ? "# tampered\n" : ""));
  await Deno.writeTextFile(`${rel}/SHA256SUMS`, `${await sha256Hex(FAKE_BINARY)}  ${asset}\n`);
  return {
    dir,
    rel,
    root,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs install.sh with only PATH and the given variables in its environment. */
async function install(args: string[], env: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command("sh", {
    args: [INSTALL_SH, ...args],
    clearEnv: true, // no IDETCD_* of the machine running the tests leaks in
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", IDETCD_TARGET: TARGET, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function installInto(
  f: { rel: string; root: string },
  args: string[],
  env: Record<string, string> = {},
): Promise<Run> {
  return await install(["--root", f.root, ...args], {
    IDETCD_BASE_URL: `file://${f.rel}`,
    ...env,
  });
}

/** Every file under `dir`, relative, sorted. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const e of Deno.readDir(`${dir}${prefix}`)) {
    const rel = `${prefix}/${e.name}`;
    if (e.isDirectory) found.push(...await listFiles(dir, rel));
    else found.push(rel);
  }
  return found.sort();
}

function assertOk(run: Run): void {
  assert.equal(run.code, 0, `install.sh failed:\n${run.stdout}\n${run.stderr}`);
}

Deno.test("install.sh installs the verified binary, the Corefile and the systemd unit", async () => {
  await using f = await fixture();
  const run = await installInto(f, BASIC);
  assertOk(run);
  assert.match(run.stdout, /verified sha256/);

  const bin = `${f.root}/usr/local/bin/idetcd`;
  assert.equal(await Deno.readTextFile(bin), FAKE_BINARY);
  assert.equal((await Deno.stat(bin)).mode! & 0o777, 0o755);
  const ran = await new Deno.Command(bin, { args: ["-version"], stdout: "piped" }).output();
  assert.equal(new TextDecoder().decode(ran.stdout).trim(), "fake idetcd -version");

  assert.deepEqual(await listFiles(f.root), [
    "/etc/idetcd/Corefile",
    "/etc/systemd/system/idetcd.service",
    "/usr/local/bin/idetcd",
  ]);

  const corefile = await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`);
  assert.match(corefile, /^\.:53 \{$/m);
  assert.match(corefile, /^ {8}endpoint http:\/\/192\.0\.2\.1:2379 http:\/\/192\.0\.2\.2:2379$/m);
  assert.match(corefile, /^ {8}limit 5$/m);
  assert.match(corefile, /^ {8}pattern worker\{\{\.ID\}\}\.tf\.local\.$/m);
  assert.doesNotMatch(corefile, /forward|cache/, "forwarding only with --resolver");
  // /ready is 503 whenever the node stops vouching for its name (not only until the first claim).
  assert.match(corefile, /^ {4}ready 127\.0\.0\.1:8181 \{\n {8}monitor continuously\n {4}\}$/m);

  const unit = await Deno.readTextFile(`${f.root}/etc/systemd/system/idetcd.service`);
  for (
    const line of [
      "Type=simple",
      "ExecStart=/usr/local/bin/idetcd -conf /etc/idetcd/Corefile -quiet",
      "Restart=on-failure",
      "RestartSec=2",
      "DynamicUser=yes",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "StateDirectory=idetcd",
      "KillSignal=SIGTERM",
      "WantedBy=multi-user.target",
    ]
  ) {
    assert.ok(unit.split("\n").includes(line), `unit lacks ${line}:\n${unit}`);
  }
  assert.match(unit, /^TimeoutStopSec=\d+$/m);
  assert.match(run.stdout, /not starting/, "--root never starts a service");
});

Deno.test("install.sh's Corefile lexes into the intended tokens, quoting a pattern with spaces", async () => {
  await using f = await fixture();
  const pattern = 'node{{printf "%02d" .ID}}.tf.local.';
  assertOk(
    await installInto(f, [
      "--endpoints",
      "https://192.0.2.1:2379",
      "--pattern",
      pattern,
      "--port",
      "1053",
      "--prefix",
      "/cluster-a",
      "--ttl",
      "10",
      "--lease",
      "30",
      "--wait",
      "--file",
      "claim.json",
    ]),
  );
  const corefile = await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`);
  assert.deepEqual(lex(corefile, "Corefile").map((t) => t.text), [
    ".:1053",
    "{",
    "idetcd",
    "{",
    "endpoint",
    "https://192.0.2.1:2379",
    "pattern",
    pattern,
    "prefix",
    "/cluster-a",
    "ttl",
    "10s",
    "lease",
    "30s",
    "wait",
    "file",
    "/run/idetcd/claim.json",
    "}",
    "ready",
    "127.0.0.1:8181",
    "{",
    "monitor",
    "continuously",
    "}",
    "errors",
    "}",
  ]);
});

Deno.test("install.sh takes its settings from IDETCD_* variables too", async () => {
  await using f = await fixture();
  assertOk(
    await installInto(f, [], {
      IDETCD_ENDPOINTS: "http://192.0.2.1:2379 http://192.0.2.2:2379",
      IDETCD_LIMIT: "7",
      IDETCD_PATTERN: "w{{.ID}}.c.local.",
      IDETCD_PORT: "5353",
      IDETCD_PREFIX: "/p",
    }),
  );
  const corefile = await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`);
  assert.match(corefile, /^\.:5353 \{$/m);
  assert.match(corefile, /endpoint http:\/\/192\.0\.2\.1:2379 http:\/\/192\.0\.2\.2:2379\n/);
  assert.match(corefile, /limit 7\n/);
  assert.match(corefile, /pattern w\{\{\.ID\}\}\.c\.local\.\n/);
  assert.match(corefile, /prefix \/p\n/);
});

Deno.test("install.sh refuses a checksum mismatch and installs nothing", async () => {
  await using f = await fixture({ tamper: true });
  const run = await installInto(f, BASIC);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /error: checksum mismatch for idetcd-x86_64-unknown-linux-gnu/);
  assert.match(run.stderr, /refusing to install/);
  assert.deepEqual(await listFiles(f.root), []);
});

Deno.test("install.sh refuses bad settings before downloading anything", async (t) => {
  await using f = await fixture();
  const cases: [string, string[], RegExp][] = [
    ["a missing pattern", ["--endpoints", "http://192.0.2.1:2379"], /error: no name pattern given/],
    ["a missing endpoint", ["--pattern", "w{{.ID}}.x."], /error: no etcd endpoint given/],
    [
      "an endpoint without scheme",
      ["--endpoints", "192.0.2.1:2379", "--pattern", "w{{.ID}}.x."],
      /must start with http:\/\//,
    ],
    [
      "a pattern without {{.ID}}",
      ["--endpoints", "http://e", "--pattern", "w.x."],
      /has no \{\{\.ID\}\} action/,
    ],
    ["limit 0", [...BASIC, "--limit", "0"], /error: limit must be a positive integer, got '0'/],
    ["limit abc", [...BASIC, "--limit", "abc"], /error: limit must be a positive integer/],
    ["port 70000", [...BASIC, "--port", "70000"], /error: port must be an integer from 1 to 65535/],
    ["an unknown option", [...BASIC, "--bogus"], /error: unknown option '--bogus'/],
    [
      "--resolver with a port resolv.conf cannot name",
      [...BASIC, "--resolver", "--port", "1053"],
      /error: --resolver without systemd-resolved needs port 53/,
    ],
    [
      "--resolver with no upstream to forward to",
      [...BASIC, "--resolver"],
      /error: --resolver found no upstream resolver to forward to; pass --upstream/,
    ],
    [
      "--resolver with a loopback upstream",
      [...BASIC, "--resolver", "--upstream", "127.0.0.1"],
      /error: upstream 127\.0\.0\.1 is a loopback address/,
    ],
    [
      "a plain-http base URL",
      [...BASIC, "--base-url", "http://127.0.0.1:9/rel"],
      /error: --base-url http:\/\/127\.0\.0\.1:9\/rel is plain http: .*pass --allow-http/,
    ],
    [
      "a base URL of another scheme",
      [...BASIC, "--base-url", "ftp://127.0.0.1/rel"],
      /error: --base-url must start with https:\/\/ or file:\/\/\/, got 'ftp:/,
    ],
  ];
  for (const [what, args, message] of cases) {
    await t.step(what, async () => {
      // A base URL that cannot be fetched: the error must come from validation.
      const run = await install(["--root", f.root, ...args], {
        IDETCD_BASE_URL: "file:///nonexistent",
      });
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stdout, /downloading/);
    });
  }
  assert.deepEqual(await listFiles(f.root), []);
});

Deno.test("install.sh --allow-http takes a plain-http base URL, with a warning", async () => {
  await using f = await fixture();
  // A real HTTP server on loopback serving the fixture's release folder.
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      try {
        return new Response(await Deno.readFile(`${f.rel}${new URL(req.url).pathname}`));
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const run = await install(
    ["--root", f.root, ...BASIC, "--base-url", `http://127.0.0.1:${server.addr.port}`],
    { IDETCD_ALLOW_HTTP: "1" },
  );
  assertOk(run);
  assert.match(run.stderr, /warning: downloading over plain http/);
  assert.match(run.stdout, /verified sha256/);
  assert.equal(await Deno.readTextFile(`${f.root}/usr/local/bin/idetcd`), FAKE_BINARY);
});

Deno.test("install.sh is idempotent: a second run changes nothing", async () => {
  await using f = await fixture();
  assertOk(await installInto(f, BASIC));
  const files = await listFiles(f.root);
  const before = await Promise.all(files.map(async (p) => {
    const s = await Deno.stat(f.root + p);
    return [p, await Deno.readTextFile(f.root + p), s.mtime?.getTime(), s.ino];
  }));
  const again = await installInto(f, BASIC);
  assertOk(again);
  assert.doesNotMatch(again.stdout, /\bwrote\b/);
  assert.equal(again.stdout.match(/unchanged/g)?.length, 3);
  const after = await Promise.all(files.map(async (p) => {
    const s = await Deno.stat(f.root + p);
    return [p, await Deno.readTextFile(f.root + p), s.mtime?.getTime(), s.ino];
  }));
  assert.deepEqual(after, before);
  assert.deepEqual(await listFiles(f.root), files);

  // A changed setting rewrites just the Corefile.
  const changed = await installInto(f, [...BASIC, "--limit", "6"]);
  assertOk(changed);
  assert.deepEqual(changed.stdout.match(/wrote \S+/g), ["wrote /etc/idetcd/Corefile"]);
});

Deno.test("install.sh --resolver forwards to the original resolvers and points resolv.conf at idetcd", async () => {
  await using f = await fixture();
  await Deno.mkdir(`${f.root}/etc`);
  const original =
    "search ec2.internal\nnameserver 192.0.2.53\nnameserver 127.0.0.53\noptions edns0\n";
  await Deno.writeTextFile(`${f.root}/etc/resolv.conf`, original);
  assertOk(await installInto(f, [...BASIC, "--resolver"]));

  const corefile = await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`);
  assert.match(corefile, /^ {4}forward \. 192\.0\.2\.53$/m, "loopback stubs are not upstreams");
  assert.match(corefile, /^ {4}cache$/m);
  const resolv = await Deno.readTextFile(`${f.root}/etc/resolv.conf`);
  assert.deepEqual(resolv.split("\n").filter((l) => l && !l.startsWith("#")), [
    "nameserver 127.0.0.1",
    "search ec2.internal",
    "options edns0",
  ]);
  assert.equal(await Deno.readTextFile(`${f.root}/etc/idetcd/resolv.conf.orig`), original);

  // Re-run: resolv.conf now names 127.0.0.1, yet the upstream stays the original one.
  const again = await installInto(f, [...BASIC, "--resolver"]);
  assertOk(again);
  assert.doesNotMatch(again.stdout, /\bwrote\b/);
  assert.equal(await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`), corefile);
});

Deno.test("install.sh --resolver under systemd-resolved writes a resolved drop-in", async () => {
  await using f = await fixture();
  await Deno.mkdir(`${f.root}/etc`);
  await Deno.mkdir(`${f.root}/run/systemd/resolve`, { recursive: true });
  await Deno.writeTextFile(
    `${f.root}/run/systemd/resolve/resolv.conf`,
    "nameserver 192.0.2.54\nsearch ec2.internal\n",
  );
  await Deno.symlink("../run/systemd/resolve/stub-resolv.conf", `${f.root}/etc/resolv.conf`);
  assertOk(await installInto(f, [...BASIC, "--resolver"]));

  // Only the zone is routed to idetcd: it forwards nothing.
  assert.doesNotMatch(await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`), /forward|cache/);
  const dropIn = await Deno.readTextFile(`${f.root}/etc/systemd/resolved.conf.d/idetcd.conf`);
  assert.match(dropIn, /^\[Resolve\]$/m);
  assert.match(dropIn, /^DNS=127\.0\.0\.1$/m);
  assert.match(
    dropIn,
    /^Domains=~tf\.local$/m,
    "only the zone, which also lets .local reach unicast DNS",
  );
  assert.doesNotMatch(dropIn, /~\.(\s|$)/, "other names keep their servers");
  assert.equal(
    await Deno.readLink(`${f.root}/etc/resolv.conf`),
    "../run/systemd/resolve/stub-resolv.conf",
  );
});

Deno.test("install.sh --dry-run prints the plan and changes nothing", async () => {
  await using f = await fixture();
  const run = await installInto(f, [...BASIC, "--dry-run"]);
  assertOk(run);
  assert.match(run.stdout, /would write \/etc\/idetcd\/Corefile/);
  assert.match(run.stdout, /\| +limit 5/);
  assert.match(
    run.stdout,
    /would install idetcd-x86_64-unknown-linux-gnu as \/usr\/local\/bin\/idetcd/,
  );
  assert.deepEqual(await listFiles(f.root), []);
});

Deno.test("install.sh runs piped into `sh -s --` as the one-liner does; a truncated copy runs nothing", async () => {
  await using f = await fixture();
  const script = await Deno.readFile(INSTALL_SH);
  const pipe = async (bytes: Uint8Array, root: string) => {
    const child = new Deno.Command("sh", {
      args: ["-s", "--", "--root", root, ...BASIC],
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        IDETCD_TARGET: TARGET,
        IDETCD_BASE_URL: `file://${f.rel}`,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(bytes);
    await writer.close();
    return await child.output();
  };
  const whole = await pipe(script, f.root);
  assert.equal(whole.code, 0, new TextDecoder().decode(whole.stderr));
  assert.equal(await Deno.readTextFile(`${f.root}/usr/local/bin/idetcd`), FAKE_BINARY);

  // As if the download broke off two thirds of the way through.
  const cut = `${f.dir}/cut`;
  await Deno.mkdir(cut);
  const truncated = await pipe(script.subarray(0, Math.floor(script.length * 2 / 3)), cut);
  assert.notEqual(truncated.code, 0);
  assert.deepEqual(await listFiles(cut), []);
});

Deno.test({
  name: "install.sh picks this machine's binary when no target is given",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using f = await fixture({ asset: `idetcd-${Deno.build.target}` });
    assertOk(await installInto(f, BASIC, { IDETCD_TARGET: "" }));
    assert.equal(await Deno.readTextFile(`${f.root}/usr/local/bin/idetcd`), FAKE_BINARY);
  },
});

// --- the generated Corefile against the project's own parser -------------------

/** Every directive install.sh can write. */
const INSTALLER_DIRECTIVES = ["bind", "idetcd", "forward", "cache", "ready", "errors", "log"];

async function generatedCorefile(args: string[]): Promise<string> {
  await using f = await fixture();
  await Deno.mkdir(`${f.root}/etc`);
  await Deno.writeTextFile(`${f.root}/etc/resolv.conf`, "nameserver 192.0.2.53\n");
  assertOk(await installInto(f, args));
  return await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`);
}

const VARIANTS: [string, string[]][] = [
  ["plain", BASIC],
  [
    "every option",
    [
      ...BASIC,
      "--pattern",
      'w{{printf "%03d" .ID}}.tf.local.',
      "--resolver",
      "--log",
      "--bind",
      "127.0.0.1",
      "--ttl",
      "10",
      "--lease",
      "30s",
      "--address",
      "eth0",
      "--wait",
      "1m",
    ],
  ],
];

Deno.test("install.sh's Corefile parses with lib/corefile/parser.ts", async (t) => {
  assert.deepEqual(INSTALLER_DIRECTIVES.filter((d) => !isDirective(d)), [], "all registered");
  for (const [what, args] of VARIANTS) {
    await t.step(what, async () => {
      const text = await generatedCorefile(args);
      const blocks = parseCorefile(text, "Corefile", { isDirective });
      assert.equal(blocks.length, 1);
      assert.deepEqual(blocks[0].keys.map((k) => k.text), [".:53"]);
      const idetcd = blocks[0].directives.find((d) => d.name.text === "idetcd");
      assert.ok(idetcd?.block, "an idetcd block");
      const option = (name: string) =>
        idetcd.block!.find((l) => l.name.text === name)?.args.map((a) => a.text);
      assert.deepEqual(option("endpoint"), ["http://192.0.2.1:2379", "http://192.0.2.2:2379"]);
      assert.deepEqual(option("limit"), ["5"]);
      assert.equal(option("pattern")?.length, 1);
    });
  }
});

Deno.test("install.sh's Corefile passes idetcd's own setup", async (t) => {
  for (const [what, args] of VARIANTS) {
    await t.step(what, async () => {
      const text = await generatedCorefile(args);
      const blocks = parseCorefile(text, "Corefile", { isDirective });
      const idetcd = blocks[0].directives.filter((d) => d.name.text === "idetcd");
      const config = parseIdetcd(idetcd, "/etc/idetcd");
      assert.deepEqual(config.etcd.endpoints, ["http://192.0.2.1:2379", "http://192.0.2.2:2379"]);
      assert.equal(config.limit, 5);
      assert.match(config.pattern.source, /\.tf\.local\.$/);
    });
  }
});

// --- a live install (no --root), in a private mount namespace -------------------

/**
 * The `unshare` arguments that give a child its own mount namespace (inside a
 * user namespace when not root), or why this machine has none. A live install
 * writes /usr/local/bin, /etc and reads /run; in such a namespace those are
 * temporary folders mounted over the real ones, so the host is never touched.
 */
function mountNamespace(): { unshare: string[] } | { reason: string } {
  if (Deno.build.os !== "linux") return { reason: "mount namespaces are Linux only" };
  const unshare = Deno.uid() === 0
    ? ["--mount", "--propagation", "private"]
    : ["--user", "--map-root-user", "--mount", "--propagation", "private"];
  try {
    const probe = new Deno.Command("unshare", {
      args: [...unshare, "sh", "-c", "mount -t tmpfs tmpfs /run"],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (probe.success) return { unshare };
    return {
      reason: `unshare ${unshare.join(" ")} failed: ${
        new TextDecoder().decode(probe.stderr).trim()
      }`,
    };
  } catch (err) {
    return { reason: `unshare cannot run: ${(err as Error).message}` };
  }
}

const MOUNT_NS = mountNamespace();
const NO_MOUNT_NS = "reason" in MOUNT_NS ? MOUNT_NS.reason : undefined;
if (NO_MOUNT_NS) {
  console.error(`install.sh live-install tests ignored: ${NO_MOUNT_NS}`);
}

/** systemctl as a container has it: present, but failing when systemd is not PID 1. */
const FAKE_SYSTEMCTL = `#!/bin/sh
echo "$*" >>"$SYSTEMCTL_LOG"
if [ ! -d /run/systemd/system ]; then
  echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
  echo "Failed to connect to bus: Host is down" >&2
  exit 1
fi
case $1 in is-active) exit 3 ;; esac
exit 0
`;

/**
 * Runs install.sh as root without --root inside a mount namespace where
 * /etc is a copy, /usr/local/bin an empty folder and /run an empty tmpfs
 * (with /run/systemd/system when `systemd` is true), and a fake systemctl
 * first on PATH. Returns the run, what systemctl was asked, and the folders.
 */
async function liveInstall(
  f: { dir: string; rel: string },
  args: string[],
  options: { systemd: boolean },
) {
  const { unshare } = MOUNT_NS as { unshare: string[] };
  const etc = `${f.dir}/etc`;
  const bin = `${f.dir}/usr-local-bin`;
  const fakeBin = `${f.dir}/fake-bin`;
  const log = `${f.dir}/systemctl.log`;
  for (const d of [etc, bin, fakeBin]) await Deno.mkdir(d);
  await Deno.writeTextFile(`${fakeBin}/systemctl`, FAKE_SYSTEMCTL, { mode: 0o755 });
  await Deno.writeTextFile(log, "");
  const setup = [
    "set -eu",
    // A copy of /etc (unreadable files such as /etc/shadow are left out) over the real one.
    'cp -RP /etc/. "$ETC_COPY/" 2>/dev/null || true',
    "mount -t tmpfs tmpfs /run",
    options.systemd ? "mkdir -p /run/systemd/system" : ":",
    'mount --bind "$ETC_COPY" /etc',
    'mount --bind "$BIN_DIR" /usr/local/bin',
    'exec sh "$@"',
  ].join("\n");
  const out = await new Deno.Command("unshare", {
    args: [...unshare, "sh", "-c", setup, "sh", INSTALL_SH, ...args],
    clearEnv: true,
    env: {
      PATH: `${fakeBin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      IDETCD_TARGET: TARGET,
      IDETCD_BASE_URL: `file://${f.rel}`,
      SYSTEMCTL_LOG: log,
      ETC_COPY: etc,
      BIN_DIR: bin,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const run: Run = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  const calls = (await Deno.readTextFile(log)).split("\n").filter(Boolean);
  return { run, calls, etc, bin };
}

Deno.test({
  name:
    "install.sh where systemctl exists but systemd is not running: installs, says how to start by hand, exits 0",
  ignore: NO_MOUNT_NS !== undefined,
  fn: async () => {
    await using f = await fixture();
    const { run, calls, etc, bin } = await liveInstall(f, BASIC, { systemd: false });
    assertOk(run);
    assert.equal(await Deno.readTextFile(`${bin}/idetcd`), FAKE_BINARY);
    assert.match(await Deno.readTextFile(`${etc}/idetcd/Corefile`), /pattern worker/);
    await Deno.stat(`${etc}/systemd/system/idetcd.service`); // ready for when systemd runs
    assert.deepEqual(calls, [], "systemctl is not called where it cannot work");
    const lines = run.stdout.split("\n");
    const at = lines.findIndex((l) => l.includes("systemd is not running here"));
    assert.ok(at >= 0, run.stdout);
    assert.deepEqual(lines.slice(at, at + 5), [
      "idetcd-install: systemd is not running here (no /run/systemd/system: a container, WSL without systemd, or another init), so idetcd is installed but not started. Start it by hand, as root:",
      "idetcd-install:     /usr/local/bin/idetcd -conf /etc/idetcd/Corefile",
      "idetcd-install: or in the background (SIGTERM stops it and frees its name at once):",
      "idetcd-install:     nohup /usr/local/bin/idetcd -conf /etc/idetcd/Corefile >>/var/log/idetcd.log 2>&1 &",
      "idetcd-install: (in a container, make '/usr/local/bin/idetcd -conf /etc/idetcd/Corefile' its command)",
    ]);
    assert.doesNotMatch(run.stderr, /System has not been booted/);
  },
});

Deno.test({
  name: "install.sh where systemd runs: daemon-reload, then enable --now",
  ignore: NO_MOUNT_NS !== undefined,
  fn: async () => {
    await using f = await fixture();
    const { run, calls } = await liveInstall(f, BASIC, { systemd: true });
    assertOk(run);
    assert.deepEqual(calls, ["daemon-reload", "is-active --quiet idetcd", "enable --now idetcd"]);
    assert.match(run.stdout, /idetcd is enabled and running/);
  },
});

// --- scripts/compile.ts ----------------------------------------------------------

Deno.test("compileArgs bakes in exactly the runtime permissions, libc-only FFI on Linux, and --unstable-net", () => {
  assert.deepEqual(
    compileArgs({
      target: "aarch64-unknown-linux-gnu",
      output: "/p/dist/idetcd-aarch64-unknown-linux-gnu",
      entry: "/p/main.ts",
    }),
    [
      "compile",
      "--target",
      "aarch64-unknown-linux-gnu",
      "--output",
      "/p/dist/idetcd-aarch64-unknown-linux-gnu",
      "--unstable-net",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-ffi=/lib/aarch64-linux-gnu/libc.so.6,/usr/lib/aarch64-linux-gnu/libc.so.6,/lib64/libc.so.6,/usr/lib64/libc.so.6,/usr/lib/libc.so.6",
      "/p/main.ts",
    ],
  );
  for (const target of RELEASE_TARGETS) {
    const args = compileArgs({ target, output: "o", entry: "e" });
    for (
      const flag of [
        "--allow-run",
        "--allow-all",
        "-A",
        "--allow-ffi",
        "--allow-import",
        "--include",
      ]
    ) {
      // A bare --allow-ffi would allow every library; only libc's paths may be named.
      assert.ok(!args.includes(flag), `${flag} must not be baked in`);
    }
    const ffi = args.filter((a) => a.startsWith("--allow-ffi"));
    if (target.includes("linux")) {
      assert.equal(ffi.length, 1);
      for (const path of ffi[0].slice("--allow-ffi=".length).split(",")) {
        assert.match(path, /^\/[\w/.-]+\/libc\.so\.6$/, `${target}: ${path}`);
      }
    } else {
      assert.deepEqual(ffi, [], `${target} has no batched UDP path`);
    }
  }
});

Deno.test("planCompile: every target, named targets, --host, and refusals", () => {
  const base = { hostTarget: "x86_64-unknown-linux-gnu", cwd: "/p" };
  const all = planCompile([], base);
  assert.equal(all.outDir, "/p/dist");
  assert.deepEqual(
    all.jobs.map((j) => j.output),
    RELEASE_TARGETS.map((t) => `/p/dist/idetcd-${t}`),
  );
  assert.ok(all.jobs.every((j) => j.entry === "/p/main.ts"));
  assert.equal(RELEASE_TARGETS.length, 4);

  assert.deepEqual(
    planCompile(["aarch64-apple-darwin", "aarch64-apple-darwin"], base).jobs,
    [{
      target: "aarch64-apple-darwin",
      output: "/p/dist/idetcd-aarch64-apple-darwin",
      entry: "/p/main.ts",
    }],
  );
  assert.deepEqual(planCompile(["--host", "--out-dir", "/o"], base).jobs, [
    { target: "x86_64-unknown-linux-gnu", output: "/o/idetcd", entry: "/p/main.ts" },
  ]);
  assert.equal(binaryName("x86_64-apple-darwin", false), "idetcd-x86_64-apple-darwin");

  assert.throws(() => planCompile(["x86_64-pc-windows-msvc"], base), UsageError);
  assert.throws(() => planCompile(["--host", "x86_64-apple-darwin"], base), UsageError);
  assert.throws(() => planCompile(["--out-dir"], base), UsageError);
  assert.throws(() => planCompile([], { ...base, denortBin: "/x/denort" }), /DENORT_BIN/);
  assert.equal(planCompile(["--host"], { ...base, denortBin: "/x/denort" }).jobs.length, 1);
});

Deno.test("formatChecksums and denortFailure", () => {
  assert.equal(
    formatChecksums(new Map([["idetcd-b", "22"], ["idetcd-a", "11"]])),
    "11  idetcd-a\n22  idetcd-b\n",
  );
  const download =
    "error: Writing deno compile executable\n\nCaused by:\n    0: Setting up base binary.\n" +
    "    1: error sending request for url (https://example.invalid/denort-x.zip): dns error\n";
  assert.match(
    denortFailure(download, TARGET)!,
    /^error: could not download .*denort-x86_64-unknown-linux-gnu\.zip.*set DENORT_BIN/,
  );
  assert.ok(!denortFailure(download, TARGET)!.includes("\n"), "one line");
  const missing = "Caused by:\n    0: Could not find denort at '/nope'\n";
  assert.match(
    denortFailure(missing, TARGET, "/nope")!,
    /^error: DENORT_BIN=\/nope could not be used/,
  );
  assert.equal(
    denortFailure("error: TS2322 [ERROR]: Type 'string' is not assignable", TARGET),
    undefined,
  );
});

Deno.test({
  name:
    "compile.ts builds with DENORT_BIN and writes a matching SHA256SUMS; a bad DENORT_BIN is one clear line",
  // A copy of /bin/true stands in for denort: deno compile appends the program to it without any download.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "idetcd-compile-test-" });
    try {
      await Deno.writeTextFile(`${dir}/hello.ts`, 'console.log("hello");\n');
      await Deno.copyFile("/bin/true", `${dir}/denort`);
      const compile = (denort: string) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            COMPILE_TS,
            "--host",
            "--out-dir",
            `${dir}/out`,
            "--entry",
            `${dir}/hello.ts`,
          ],
          env: { DENORT_BIN: denort, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();

      const ok = await compile(`${dir}/denort`);
      assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
      const binary = await Deno.readFile(`${dir}/out/idetcd`);
      assert.equal(
        await Deno.readTextFile(`${dir}/out/SHA256SUMS`),
        `${await sha256Hex(binary)}  idetcd\n`,
      );

      const bad = await compile(`${dir}/missing-denort`);
      assert.equal(bad.code, 1);
      const lastLine = new TextDecoder().decode(bad.stderr).trim().split("\n").at(-1)!;
      assert.match(
        lastLine,
        /^error: DENORT_BIN=\S+missing-denort could not be used as the runtime base/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs scripts/compile.ts --host into `outDir` with DENORT_BIN set; `entry` defaults to main.ts. */
async function compileHost(denort: string, outDir: string, entry?: string): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      COMPILE_TS,
      "--host",
      "--out-dir",
      outDir,
      ...(entry ? ["--entry", entry] : []),
    ],
    env: { DENORT_BIN: denort, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The last line of a run's stderr: compile.ts's one-line verdict. */
function lastLine(run: Run): string {
  return run.stderr.trim().split("\n").at(-1)!;
}

Deno.test("classifyDenortBin: the Deno CLI, a script and a plain executable", async () => {
  const cli = await Deno.readFile(Deno.execPath());
  // The CLI is recognised by its bytes alone (a base for another CPU cannot be run here).
  const byBytes = classifyDenortBin(cli, undefined);
  assert.equal(byBytes.ok, false);
  assert.match(!byBytes.ok ? byBytes.reason : "", /^is the Deno CLI, not its runtime base denort/);
  const byVersion = classifyDenortBin(Uint8Array.of(0x7f, 0x45, 0x4c, 0x46), "deno 2.9.6 (x)\n");
  assert.match(!byVersion.ok ? byVersion.reason : "", /^is the Deno CLI \(deno 2\.9\.6\)/);
  const script = classifyDenortBin(new TextEncoder().encode("#!/bin/sh\necho hi\n"), "hi");
  assert.match(!script.ok ? script.reason : "", /is not an executable/);
  assert.deepEqual(classifyDenortBin(Uint8Array.of(0x7f, 0x45, 0x4c, 0x46, 0), undefined), {
    ok: true,
  });
  assert.ok(!CLI_MARKER.includes("\n"));
});

Deno.test({
  name: "compile.ts refuses the Deno CLI as DENORT_BIN before building anything",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "idetcd-compile-test-" });
    try {
      const run = await compileHost(Deno.execPath(), `${dir}/out`);
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        lastLine(run),
        new RegExp(
          `^error: DENORT_BIN=\\S+ could not be used as the runtime base for ${Deno.build.target}: it is the Deno CLI \\(deno ${Deno.version.deno}\\), not its runtime base denort`,
        ),
      );
      assert.match(lastLine(run), /point DENORT_BIN at the denort unzipped from denort-/);
      await assert.rejects(Deno.stat(`${dir}/out`), Deno.errors.NotFound, "nothing written");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "compile.ts writes no SHA256SUMS when the host binary does not start (-version)",
  // Copies of /bin/false and /bin/true stand in for a wrong runtime base.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "idetcd-compile-test-" });
    try {
      await Deno.writeTextFile(`${dir}/hello.ts`, 'console.log("hello");\n');
      await Deno.copyFile("/bin/false", `${dir}/denort-false`);
      await Deno.copyFile("/bin/true", `${dir}/denort-true`);

      // Exits 1: refused, removed, no SHA256SUMS.
      const failing = await compileHost(`${dir}/denort-false`, `${dir}/a`, `${dir}/hello.ts`);
      assert.equal(failing.code, 1, failing.stderr);
      assert.match(
        lastLine(failing),
        /^error: the binary built for \S+ does not start as it should \(idetcd -version exited 1 and printed nothing\); removed it and wrote no SHA256SUMS/,
      );
      assert.deepEqual([...Deno.readDirSync(`${dir}/a`)], []);

      // main.ts built on a base that runs but is no denort: exit 0 is not enough, it must
      // print idetcd's version.
      const silent = await compileHost(`${dir}/denort-true`, `${dir}/b`);
      assert.equal(silent.code, 1, silent.stderr);
      assert.match(
        lastLine(silent),
        /does not start as it should \(idetcd -version exited 0 and printed nothing, not idetcd-\d+\.\d+\.\d+\)/,
        // deno compile type-checks main.ts: a build error shows above the last line.
        silent.stderr,
      );
      assert.deepEqual([...Deno.readDirSync(`${dir}/b`)], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("install.sh --ready off leaves the ready endpoint out; a bad address is refused before any download", async () => {
  await using f = await fixture();
  assertOk(await installInto(f, [...BASIC, "--ready", "off"]));
  assert.doesNotMatch(await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`), /ready/);
  await using g = await fixture();
  const bad = await installInto(g, [...BASIC, "--ready", "a{b"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--ready takes an address like 127\.0\.0\.1:8181 or off/);
});
