/**
 * The README as a newcomer uses it: the Quick start's commands run as
 * written, on a copy of the tree without a `Corefile`, and the messages the
 * README quotes are the ones the program prints. Like
 * tests/corefile_example_test.ts for Corefile.example, this keeps the text
 * and the program from drifting apart.
 *
 * The Quick start uses fixed ports (1053, etcd's 2379, Corefile.example's
 * 8080, 8181 and 9153), so its walk-through runs inside a private network
 * namespace (tests/helpers/private_netns.ts) where they are surely free; where
 * none can be had it is ignored, with the reason printed.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  IN_PRIVATE_NETNS,
  NETNS_IPV4,
  privateNetns,
  rerunInPrivateNetns,
} from "./helpers/private_netns.ts";
import { waitFor } from "./helpers/wait.ts";
import {
  isUnitTest,
  libTestFiles,
  NOT_UNIT,
  testArgs,
  testPlan,
  UNIT_FLAGS,
} from "../scripts/test.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const README = Deno.readTextFileSync(`${ROOT}README.md`);
const DEPLOY_README = Deno.readTextFileSync(`${ROOT}deploy/README.md`);

/**
 * The environment for commands a user types: this one without INIT_CWD,
 * which `deno task test` sets and `deno task`/main.ts would take for the
 * user's folder.
 */
function userEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  return { ...env, NO_COLOR: "1", ...extra };
}

/** The text of a `## Title` section, up to the next heading of at most one level below it. */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has a "${heading}" section`);
  const level = heading.match(/^#+/)![0].length;
  const rest = markdown.slice(start + heading.length + 2);
  const next = rest.search(new RegExp(`^#{1,${level + 1}} `, "m"));
  return next < 0 ? rest : rest.slice(0, next);
}

/** Each command line of the ```sh blocks of `text`, with its trailing `# comment`. */
function shellLines(text: string): { command: string; comment: string }[] {
  const lines: { command: string; comment: string }[] = [];
  for (const block of text.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    for (const line of block[1].split("\n")) {
      if (line.trim() === "") continue;
      // The comment starts at the first " # " (the commands hold no '#' of their own).
      const at = line.indexOf(" # ");
      lines.push({
        command: (at < 0 ? line : line.slice(0, at)).trim(),
        comment: at < 0 ? "" : line.slice(at + 3).trim(),
      });
    }
  }
  return lines;
}

// --- the Quick start, as written ---------------------------------------------------------

/** One command of the Quick start and what running it must show. */
type Step =
  /** Not run here; `why` says where it is tested. */
  | { command: string; kind: "elsewhere"; why: string }
  /** A server started with `&`: runs until killed; `ready` says when the next line may run. */
  | { command: string; kind: "server"; ready: (output: () => string) => Promise<unknown> }
  /** Runs to completion, exit 0; `expect` checks stdout; `shown` must appear in its comment. */
  | { command: string; kind: "run"; expect: (stdout: string) => void; shown?: string }
  /** `kill %N...`: SIGTERM to those jobs (process groups, as a shell's job control does). */
  | { command: string; kind: "kill" };

/** Waits until `output()` matches every pattern (and fails early when the process is gone). */
function printed(...patterns: RegExp[]): (output: () => string) => Promise<unknown> {
  return (output) =>
    waitFor(() => patterns.every((p) => p.test(output())), {
      timeoutMs: 60_000,
      what: `${patterns.join(" and ")} in:\n${output()}`,
    });
}

/** etcd answers on localhost:2379, where Corefile.example points. */
async function etcdHealthy(): Promise<unknown> {
  return await waitFor(async () => {
    const out = await new Deno.Command("etcdctl", {
      args: ["--endpoints=http://localhost:2379", "--dial-timeout=1s", "endpoint", "health"],
      env: { ETCDCTL_API: "3" },
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  }, { timeoutMs: 30_000, what: "etcd on localhost:2379" });
}

const STEPS: Step[] = [
  {
    command: "npx -y deno@2.9.6 task demo",
    kind: "elsewhere",
    why: "tests/demo_test.ts runs the demo",
  },
  { command: "npx -y deno@2.9.6 task test", kind: "elsewhere", why: "this suite is that command" },
  { command: "deno task start -dns.port 1053 &", kind: "server", ready: printed(/^idetcd-\d/m) },
  {
    command: "dig @127.0.0.1 -p 1053 example.org",
    kind: "run",
    expect: (out) => {
      // CoreDNS's whoami: the client's address and port in the additional section.
      assert.match(out, /^;; ADDITIONAL SECTION:$/m);
      assert.match(out, /^example\.org\.\s+0\s+IN\s+A\s+127\.0\.0\.1$/m);
      assert.match(out, /^_udp\.example\.org\.\s+0\s+IN\s+SRV\s+0 0 \d+ \.$/m);
    },
  },
  { command: "kill %1", kind: "kill" },
  {
    command: 'etcd --data-dir "$(mktemp -d)" >/dev/null 2>&1 &',
    kind: "server",
    ready: etcdHealthy,
  },
  {
    command: "deno run -A main.ts -conf Corefile.example -dns.port 1053 &",
    kind: "server",
    ready: printed(/claimed worker1\.tf\.local\. \(ID 1\)/, /^idetcd-\d/m),
  },
  {
    command: "dig @127.0.0.1 -p 1053 +short worker1.tf.local",
    kind: "run",
    // "This machine's address": the namespace's eth0.
    expect: (out) => assert.equal(out, `${NETNS_IPV4}\n`),
  },
  {
    command: "dig @127.0.0.1 -p 1053 +short _nodes.tf.local SRV",
    kind: "run",
    expect: (out) => assert.equal(out, "0 100 2222 worker1.tf.local.\n"),
    shown: "0 100 2222 worker1.tf.local.",
  },
  {
    command: "deno run -A main.ts -conf Corefile.example whoami",
    kind: "run",
    expect: (out) => assert.equal(out, "1 worker1.tf.local.\n"),
    shown: "1 worker1.tf.local.",
  },
  { command: "kill %2 %1", kind: "kill" },
];

/** A background job: its process group, its output, its exit. */
interface Job {
  command: string;
  pid: number;
  output: () => string;
  status: Promise<Deno.CommandStatus>;
}

/** Copies the project into `dest` as a fresh clone has it: no ./Corefile, no dist/, no .git. */
async function cleanCopy(from: string, dest: string, rel = ""): Promise<void> {
  for await (const entry of Deno.readDir(`${from}${rel}`)) {
    const path = `${rel}/${entry.name}`;
    if (rel === "" && ["Corefile", "dist", ".git", "node_modules"].includes(entry.name)) continue;
    if (entry.isDirectory) {
      await Deno.mkdir(`${dest}${path}`);
      await cleanCopy(from, dest, path);
    } else if (entry.isFile) {
      await Deno.copyFile(`${from}${path}`, `${dest}${path}`);
    }
  }
}

/** Sends `signal` to the process group `pgid` (`kill -SIG -- -PGID`); false when it is gone. */
async function signalGroup(pgid: number, signal: string): Promise<boolean> {
  const out = await new Deno.Command("kill", {
    args: [`-${signal}`, "--", `-${pgid}`],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

async function quickStart(): Promise<void> {
  // The commands in the README are exactly these, in this order.
  const lines = shellLines(section(README, "## Quick start"));
  assert.deepEqual(lines.map((l) => l.command), STEPS.map((s) => s.command));
  for (const [i, step] of STEPS.entries()) {
    if (step.kind === "run" && step.shown) {
      assert.ok(lines[i].comment.includes(step.shown), `the README shows ${step.shown}`);
    }
  }

  const tree = await Deno.makeTempDir({ prefix: "idetcd-readme-" });
  const jobs = new Map<number, Job>();
  const env = userEnv({ TMPDIR: tree });
  try {
    const work = `${tree}/idetcd`;
    await Deno.mkdir(work);
    await cleanCopy(ROOT.replace(/\/$/, ""), work);
    await Deno.mkdir(`${tree}/tmp`);
    env.TMPDIR = `${tree}/tmp`;

    for (const step of STEPS) {
      const where = `README Quick start: ${step.command}`;
      if (step.kind === "elsewhere") {
        // Not run here (npx would fetch Deno itself); the task exists and the version is ours.
        const [, version, task] = /^npx -y deno@(\S+) task (\S+)$/.exec(step.command)!;
        assert.equal(version, Deno.version.deno, where);
        const config = JSON.parse(await Deno.readTextFile(`${work}/deno.json`));
        assert.ok(config.tasks[task], `${where}: deno.json has the task (${step.why})`);
      } else if (step.kind === "server") {
        // Its own process group (setsid), as an interactive shell gives each job.
        const child = new Deno.Command("setsid", {
          args: ["sh", "-c", `exec ${step.command.replace(/\s*&$/, "")}`],
          cwd: work,
          env,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let text = "";
        const decoder = new TextDecoder();
        const pump = async (s: ReadableStream<Uint8Array>) => {
          for await (const chunk of s) text += decoder.decode(chunk, { stream: true });
        };
        const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
        const status = child.status.then(async (s) => (await pumped, s));
        // bash numbers a new job one past the highest running one.
        const number = Math.max(0, ...jobs.keys()) + 1;
        const job: Job = { command: step.command, pid: child.pid, output: () => text, status };
        jobs.set(number, job);
        let exited = false;
        status.then(() => exited = true);
        await step.ready(() => {
          if (exited) throw new Error(`${where} exited:\n${text}`);
          return text;
        });
      } else if (step.kind === "run") {
        const out = await new Deno.Command("sh", {
          args: ["-c", step.command],
          cwd: work,
          env,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(60_000),
        }).output();
        const stdout = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, `${where}:\n${stdout}${new TextDecoder().decode(out.stderr)}`);
        step.expect(stdout);
      } else {
        for (const ref of step.command.split(/\s+/).slice(1)) {
          const number = Number(ref.replace(/^%/, ""));
          const job = jobs.get(number);
          assert.ok(job, `${where}: job ${ref} is running`);
          assert.ok(await signalGroup(job.pid, "TERM"), `${where}: signal ${ref}`);
          const status = await job.status;
          // idetcd stops cleanly on SIGTERM; etcd is only asked to go.
          if (job.command.startsWith("deno ")) {
            assert.equal(status.code, 0, `${job.command} after SIGTERM:\n${job.output()}`);
          }
          // The job is done when its whole group is (deno task's child too).
          await waitFor(async () => !(await signalGroup(job.pid, "0")), {
            what: `process group of ${job.command} to exit`,
          });
          jobs.delete(number);
        }
      }
    }
    assert.equal(jobs.size, 0, "the walk-through stops what it starts");
  } finally {
    for (const job of jobs.values()) {
      await signalGroup(job.pid, "KILL");
      await job.status;
    }
    await Deno.remove(tree, { recursive: true }).catch(() => {});
  }
}

const QUICK_START = "README: the Quick start's commands run as written on a clean tree";
const NETNS = IN_PRIVATE_NETNS ? undefined : privateNetns();
const NO_NETNS = NETNS && "reason" in NETNS ? NETNS.reason : undefined;
if (NO_NETNS) console.error(`README Quick start walk-through ignored: ${NO_NETNS}`);

Deno.test({
  name: QUICK_START,
  ignore: NO_NETNS !== undefined,
  async fn() {
    if (IN_PRIVATE_NETNS) await quickStart();
    else await rerunInPrivateNetns(new URL(import.meta.url), QUICK_START);
  },
});

// --- the messages the README quotes ------------------------------------------------------

/** Runs `deno run -A main.ts ARGS` in `cwd` as a user would. */
async function idetcd(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, ...args],
    cwd,
    clearEnv: true,
    env: userEnv(),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // Every Corefile here is broken; one that started by mistake must not hang the test.
    signal: AbortSignal.timeout(30_000),
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** README text in backticks (code blocks left out), unwrapped: long quotes break over lines. */
const QUOTED = [...README.replace(/^```[\s\S]*?^```$/gm, "").matchAll(/`([^`]+)`/g)].map((m) =>
  m[1].replace(/\s*\n\s*/g, " ")
);

function assertQuoted(text: string): void {
  assert.ok(QUOTED.includes(text), `the README quotes \`${text}\``);
}

Deno.test("README: the command-line and Corefile messages it quotes are the ones printed", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-readme-msg-" });
  try {
    await t.step("an unknown flag: Go's flag package wording, the usage, exit 2", async () => {
      assertQuoted("flag provided but not defined: -bogus");
      for (const flag of ["-bogus", "--bogus"]) {
        const run = await idetcd([flag], dir);
        assert.equal(run.code, 2);
        const [first, second] = run.stderr.split("\n");
        assert.equal(first, "flag provided but not defined: -bogus");
        assert.match(second, /^Usage: idetcd /);
      }
      const stray = await idetcd(["stray"], dir);
      assert.equal(stray.code, 2);
      assert.equal(stray.stderr.split("\n")[0], "extra command line arguments: stray");
    });

    const broken = async (text: string) => {
      await Deno.writeTextFile(`${dir}/Corefile`, text);
      const run = await idetcd(["-conf", "Corefile", "-dns.port", "0"], dir);
      assert.equal(run.code, 1, run.stderr);
      return run.stderr.trim();
    };
    await t.step("an unclosed '{' is named on its line", async () => {
      const message =
        "Corefile:1 - Syntax error: Unexpected EOF: the block opened on this line is not closed, expecting '}'";
      assertQuoted(message);
      assert.equal(await broken(". {\n    whoami\n"), message);
      assert.equal(await broken(". {\n    forward . 192.0.2.1 {\n    }\n"), message);
    });
    await t.step(
      "other Corefile errors: Error during parsing, and plugin/NAME: first",
      async () => {
        assertQuoted("FILE:LINE - Error during parsing: Unknown directive 'nosuchplugin'");
        assert.equal(
          await broken(". {\n    nosuchplugin\n}\n"),
          "Corefile:2 - Error during parsing: Unknown directive 'nosuchplugin'",
        );
        assertQuoted("plugin/etcd: FILE:LINE - Error during parsing: unknown property 'bogus'");
        assert.equal(
          await broken(". {\n    etcd {\n        bogus\n    }\n}\n"),
          "plugin/etcd: Corefile:3 - Error during parsing: unknown property 'bogus'",
        );
      },
    );
    await t.step("whoami without a Corefile says which file it looked for", async () => {
      await Deno.remove(`${dir}/Corefile`).catch(() => {});
      const template =
        "idetcd whoami: no Corefile at /home/me/Corefile; whoami reads the idetcd block of a Corefile: pass -conf FILE";
      assertQuoted(template);
      const run = await idetcd(["whoami"], dir);
      assert.equal(run.code, 1);
      assert.equal(run.stderr.trim(), template.replace("/home/me", await Deno.realPath(dir)));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- the developer commands it names -----------------------------------------------------

/** Runs `deno task ARGS` in the project, as the README shows it. */
async function task(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    cwd: ROOT,
    clearEnv: true,
    env: userEnv(),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("README: `deno task bench --help` and `deno task bench -- --help` print the usage", async () => {
  assert.ok(README.includes("deno task bench --help"));
  for (const args of [["bench", "--help"], ["bench", "--", "--help"]]) {
    const run = await task(args);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^usage: deno task bench /m);
    assert.match(run.stdout, /--write-results/);
  }
});

Deno.test("README: `deno task test FILE` runs only that file", async () => {
  assert.match(README, /deno task test tests\/install_test\.ts +# only the files or folders named/);
  const run = await task(["test", "lib/dns/name_test.ts"]);
  assert.equal(run.code, 0, run.stderr);
  // deno test announces each file it runs.
  const files = [...run.stdout.matchAll(/^running \d+ tests? from (\S+)$/gm)].map((m) => m[1]);
  assert.deepEqual(files, ["./lib/dns/name_test.ts"]);
});

Deno.test("scripts/test.ts: no path means tests/ and lib/; paths narrow it; flags pass through", () => {
  const existing = new Set(["/p/tests/a_test.ts", "/p/lib", "/elsewhere/x_test.ts"]);
  const plan = (args: string[], cwd = "/p") =>
    testArgs(args, { cwd, root: "/p/", exists: (p) => existing.has(p) });
  const base = ["test", "-A", "--no-check=remote"];
  assert.deepEqual(plan([]), [...base, "/p/tests/", "/p/lib/"]);
  assert.deepEqual(plan(["tests/a_test.ts"]), [...base, "/p/tests/a_test.ts"]);
  assert.deepEqual(plan(["--", "lib"]), [...base, "/p/lib"]);
  assert.deepEqual(plan(["a_test.ts"], "/p/tests"), [...base, "/p/tests/a_test.ts"]);
  assert.deepEqual(plan(["/elsewhere/x_test.ts", "--filter", "brace"]), [
    ...base,
    "--filter",
    "brace",
    "/elsewhere/x_test.ts",
  ]);
  // A flag's value that is no file stays with its flag, and everything still runs.
  assert.deepEqual(plan(["--filter", "brace"]), [
    ...base,
    "--filter",
    "brace",
    "/p/tests/",
    "/p/lib/",
  ]);
});

Deno.test("scripts/test.ts --unit: the *_test.ts under lib/ but NOT_UNIT, narrowed by paths, without network, processes or FFI", () => {
  const tree = [
    "lib/dns/name_test.ts",
    "lib/dns/wire.ts",
    "lib/plugins/forward/forward_test.ts",
    "lib/plugins/forward/setup_test.ts",
    "lib/server/udp/mod_test.ts",
    "lib/server/udp/abi_test.ts",
    "tests/install_test.ts",
  ];
  const existing = new Set(["/p/lib", "/p/lib/plugins", "/p/lib/dns/name_test.ts", "/p/tests"]);
  const plan = (args: string[], cwd = "/p") =>
    testPlan(["--unit", ...args], {
      cwd,
      root: "/p/",
      exists: (p) => existing.has(p),
      testFiles: () => tree,
    });
  const unit = ["test", ...UNIT_FLAGS];
  assert.deepEqual(plan([]).args, [
    ...unit,
    "/p/lib/dns/name_test.ts",
    "/p/lib/plugins/forward/setup_test.ts",
  ]);
  assert.match(plan([]).what, /^test:unit: 2 unit test files /);
  assert.deepEqual(plan(["plugins"], "/p/lib").args, [
    ...unit,
    "/p/lib/plugins/forward/setup_test.ts",
  ]);
  assert.deepEqual(plan(["--", "lib/dns/name_test.ts", "--filter", "escape"]).args, [
    ...unit,
    "--filter",
    "escape",
    "/p/lib/dns/name_test.ts",
  ]);
  // A path with no unit test below it is an error, not an empty run.
  assert.throws(() => plan(["tests"]), /no unit tests in tests /);
  // The permissions: no -A, no network, processes or FFI, and no prompt for them.
  for (const flag of UNIT_FLAGS) {
    assert.doesNotMatch(flag, /^(-A|--allow-all|--allow-net|--allow-run|--allow-ffi)/);
  }
  assert.ok(UNIT_FLAGS.includes("--no-prompt"));
  // The full suite is unchanged by it.
  assert.deepEqual(testArgs([], { cwd: "/p", root: "/p/", exists: () => false }), [
    "test",
    "-A",
    "--no-check=remote",
    "/p/tests/",
    "/p/lib/",
  ]);
});

Deno.test("scripts/test.ts NOT_UNIT: every entry exists; the unit tests are most of lib/'s", () => {
  const all = libTestFiles(ROOT);
  for (const entry of NOT_UNIT) {
    assert.ok(
      entry.endsWith("/") ? all.some((f) => f.startsWith(entry)) : all.includes(entry),
      `${entry} is listed in NOT_UNIT but no such test exists`,
    );
  }
  const unit = all.filter(isUnitTest);
  assert.ok(unit.length > all.length / 2, `${unit.length} of ${all.length}`);
  assert.ok(
    unit.includes("lib/plugins/log/mod_test.ts") && unit.includes("lib/plugins/errors/mod_test.ts"),
  );
});

Deno.test("`deno task test:unit FILE` runs that file; a unit test that opens a socket or starts a process fails", async () => {
  assert.match(README, /deno task test:unit/);
  const run = await task(["test:unit", "lib/dns/name_test.ts"]);
  assert.equal(run.code, 0, run.stderr);
  // The files run in parallel, so each result line names its file.
  const files = new Set([...run.stdout.matchAll(/^(\S+_test\.ts) => /gm)].map((m) => m[1]));
  assert.deepEqual([...files], ["./lib/dns/name_test.ts"]);
  // Every test of that file, and only those: as many as it declares.
  const declared =
    (await Deno.readTextFile(new URL("../lib/dns/name_test.ts", import.meta.url))).match(
      /^Deno\.test\(/gm,
    )!.length;
  assert.match(run.stdout, new RegExp(`^ok \\| ${declared} passed \\| 0 failed`, "m"));
  assert.match(run.stderr, /^test:unit: 1 unit test files /m);
  // A listed integration test is no unit test: named alone, it is refused with the rule.
  const refused = await task(["test:unit", "lib/server/listen_test.ts"]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /no unit tests in lib\/server\/listen_test\.ts \(unit tests are/);
  // The unit permissions deny what unit tests must not do.
  const dir = await Deno.makeTempDir({ prefix: "idetcd-unit-" });
  try {
    await Deno.writeTextFile(
      `${dir}/io_test.ts`,
      [
        'Deno.test("listens", () => Deno.listen({ hostname: "127.0.0.1", port: 0 }).close());',
        'Deno.test("spawns", () => { new Deno.Command("true").outputSync(); });',
        'Deno.test("reads", () => { Deno.readTextFileSync(import.meta.filename!); });',
      ].join("\n"),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", ...UNIT_FLAGS, `${dir}/io_test.ts`],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, text);
    assert.match(text, /Requires net access/);
    assert.match(text, /Requires run access/);
    assert.match(text, /1 passed \| 2 failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("README: every install one-liner with OWNER says what to replace, in the same section", () => {
  for (const [file, text] of [["README.md", README], ["deploy/README.md", DEPLOY_README]]) {
    for (const part of text.split(/^## /m)) {
      if (part.includes("github.com/OWNER/")) {
        assert.match(part, /Replace `OWNER`/i, `${file}, section "${part.split("\n")[0]}"`);
      }
    }
  }
});
