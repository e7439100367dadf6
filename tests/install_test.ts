/**
 * deploy/install.sh, run for real with `sh` into a temporary --root against a
 * file:// "release" (a fake binary and its SHA256SUMS), and scripts/compile.ts's
 * plan and its run against a stand-in runtime base (DENORT_BIN), never a download.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { lex } from "../lib/corefile/lexer.ts";
import {
  binaryName,
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

  assert.match(
    await Deno.readTextFile(`${f.root}/etc/idetcd/Corefile`),
    /forward \. 192\.0\.2\.54\n/,
  );
  const dropIn = await Deno.readTextFile(`${f.root}/etc/systemd/resolved.conf.d/idetcd.conf`);
  assert.match(dropIn, /^\[Resolve\]$/m);
  assert.match(dropIn, /^DNS=127\.0\.0\.1$/m);
  assert.match(dropIn, /^Domains=~\. ~tf\.local$/m, ".local must reach unicast DNS");
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

/** Imports a project module by a computed path, so a module not written yet only skips tests. */
async function optionalImport<T>(path: string): Promise<T | undefined> {
  try {
    return await import(new URL(path, import.meta.url).href) as T;
  } catch {
    return undefined;
  }
}

type Block = {
  keys: { text: string }[];
  directives: {
    name: { text: string };
    args: { text: string }[];
    block: { name: { text: string }; args: { text: string }[] }[] | null;
  }[];
};
const parserModule = await optionalImport<{
  parseCorefile(
    text: string,
    file: string,
    options: { isDirective(name: string): boolean },
  ): Block[];
}>("../lib/corefile/parser.ts");
const registryModule = await optionalImport<{ isDirective(name: string): boolean }>(
  "../lib/server/registry.ts",
);
const setupModule = await optionalImport<{
  parseIdetcd(directives: readonly unknown[], configDir: string): {
    etcd: { endpoints: string[] };
    limit: number;
    pattern: { source: string };
  };
}>("../lib/plugins/idetcd/setup.ts");

/** Every directive install.sh can write. */
const INSTALLER_DIRECTIVES = ["bind", "idetcd", "forward", "cache", "errors", "log"];
const unregistered = INSTALLER_DIRECTIVES.filter((d) => !registryModule?.isDirective(d));

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

Deno.test({
  name: "install.sh's Corefile parses with lib/corefile/parser.ts",
  ignore: !parserModule,
  fn: async (t) => {
    for (const [what, args] of VARIANTS) {
      await t.step(what, async () => {
        const text = await generatedCorefile(args);
        // Directives whose plugins are still being written count as known here;
        // the next test holds the generated file to the registry as it is.
        const blocks = parserModule!.parseCorefile(text, "Corefile", {
          isDirective: (n) => registryModule?.isDirective(n) || INSTALLER_DIRECTIVES.includes(n),
        });
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
  },
});

Deno.test({
  name: "install.sh's Corefile passes the plugin registry and idetcd's own setup",
  // Runs once the parser exists and every directive install.sh writes is registered.
  ignore: !parserModule || !setupModule || unregistered.length > 0,
  fn: async (t) => {
    for (const [what, args] of VARIANTS) {
      await t.step(what, async () => {
        const text = await generatedCorefile(args);
        const blocks = parserModule!.parseCorefile(text, "Corefile", {
          isDirective: registryModule!.isDirective,
        });
        const idetcd = blocks[0].directives.filter((d) => d.name.text === "idetcd");
        const config = setupModule!.parseIdetcd(idetcd, "/etc/idetcd");
        assert.deepEqual(config.etcd.endpoints, ["http://192.0.2.1:2379", "http://192.0.2.2:2379"]);
        assert.equal(config.limit, 5);
        assert.match(config.pattern.source, /\.tf\.local\.$/);
      });
    }
  },
});

// --- scripts/compile.ts ----------------------------------------------------------

Deno.test("compileArgs bakes in exactly the runtime permissions and --unstable-net", () => {
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
      "/p/main.ts",
    ],
  );
  const args = compileArgs({ target: TARGET, output: "o", entry: "e" });
  for (
    const flag of ["--allow-run", "--allow-all", "-A", "--allow-ffi", "--allow-import", "--include"]
  ) {
    assert.ok(!args.includes(flag), `${flag} must not be baked in`);
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
