/**
 * abi.ts against the machine's C headers: tests/helpers/abi_probe.c, built
 * with gcc into a temporary folder, prints sizeof/offsetof/constants, and
 * every figure must equal abi.ts's. Where a cross compiler for the other
 * supported architecture is installed (aarch64-linux-gnu-gcc on x86_64,
 * x86_64-linux-gnu-gcc on aarch64), abi.ts's figures are also compiled
 * there as static assertions. Without gcc the test is ignored, and says why.
 */

import assert from "node:assert/strict";
import { abiSupported, C, errnoName, LAYOUTS, SCALARS } from "./abi.ts";

const PROBE = new URL("../../../tests/helpers/abi_probe.c", import.meta.url).pathname;

function has(command: string): boolean {
  try {
    return new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const linux = Deno.build.os === "linux";
const gcc = linux && has("gcc");
const crossCompilers = ["aarch64-linux-gnu-gcc", "x86_64-linux-gnu-gcc"].filter((c) =>
  linux && !c.startsWith(Deno.build.arch) && has(c)
);
if (linux && !gcc) console.error("abi_test: gcc not found; the C ABI check is ignored");
if (linux && crossCompilers.length === 0) {
  console.error(
    "abi_test: no cross compiler (aarch64-linux-gnu-gcc / x86_64-linux-gnu-gcc); only this machine's ABI is checked",
  );
}

/** What abi.ts claims, as the probe's lines. */
function claimed(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, layout] of Object.entries(LAYOUTS)) {
    out.set(`size ${name}`, String(layout.size));
    out.set(`align ${name}`, String(layout.align));
    for (const [field, f] of Object.entries(layout.fields)) {
      out.set(`field ${name}.${field}`, `${f.offset} ${f.size}`);
    }
  }
  for (const [type, size] of Object.entries(SCALARS)) out.set(`scalar ${type}`, String(size));
  for (const [name, value] of Object.entries(C)) out.set(`const ${name}`, String(value));
  return out;
}

Deno.test({
  name: "abi: every layout, width and constant of abi.ts equals the C headers (gcc probe)",
  ignore: !gcc,
  fn() {
    assert.equal(abiSupported(), undefined, "this machine should be one abi.ts describes");
    const dir = Deno.makeTempDirSync({ prefix: "idetcd-abi-" });
    try {
      const exe = `${dir}/abi_probe`;
      const build = new Deno.Command("gcc", {
        args: ["-std=c11", "-Wall", "-Werror", "-o", exe, PROBE],
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      assert.ok(build.success, new TextDecoder().decode(build.stderr));
      const run = new Deno.Command(exe, { stdout: "piped" }).outputSync();
      assert.ok(run.success);
      const actual = new Map<string, string>();
      for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
        const m = /^(size|align|field|scalar|const) (\S+) (.+)$/.exec(line);
        assert.ok(m, `probe line: ${line}`);
        actual.set(`${m[1]} ${m[2]}`, m[3]);
      }
      const want = claimed();
      const wrong: string[] = [];
      for (const [key, value] of want) {
        const got = actual.get(key);
        if (got !== value) wrong.push(`${key}: abi.ts ${value}, C ${got ?? "(not printed)"}`);
      }
      // Everything the probe prints is claimed too: nothing checked in C is left out of abi.ts.
      for (const key of actual.keys()) if (!want.has(key)) wrong.push(`${key}: not in abi.ts`);
      assert.deepEqual(wrong, []);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "abi: abi.ts holds for the other architecture too (cross compiler, static assertions)",
  ignore: crossCompilers.length === 0,
  fn() {
    const lines = [
      "#define _GNU_SOURCE",
      "#include <errno.h>",
      "#include <netinet/in.h>",
      "#include <poll.h>",
      "#include <stddef.h>",
      "#include <sys/eventfd.h>",
      "#include <sys/socket.h>",
      "#include <sys/types.h>",
      "#include <sys/uio.h>",
    ];
    const check = (expr: string, what: string) =>
      lines.push(`_Static_assert(${expr}, ${JSON.stringify(what)});`);
    for (const [name, layout] of Object.entries(LAYOUTS)) {
      check(`sizeof(struct ${name}) == ${layout.size}`, `sizeof ${name}`);
      check(`_Alignof(struct ${name}) == ${layout.align}`, `alignof ${name}`);
      for (const [field, f] of Object.entries(layout.fields)) {
        check(`offsetof(struct ${name}, ${field}) == ${f.offset}`, `offsetof ${name}.${field}`);
        check(`sizeof(((struct ${name} *)0)->${field}) == ${f.size}`, `sizeof ${name}.${field}`);
      }
    }
    const types: Record<string, string> = { "void*": "void *" };
    for (const [type, size] of Object.entries(SCALARS)) {
      check(`sizeof(${types[type] ?? type}) == ${size}`, `sizeof ${type}`);
    }
    for (const [name, value] of Object.entries(C)) check(`${name} == ${value}`, name);
    const dir = Deno.makeTempDirSync({ prefix: "idetcd-abi-cross-" });
    try {
      Deno.writeTextFileSync(`${dir}/check.c`, lines.join("\n") + "\n");
      for (const cc of crossCompilers) {
        const out = new Deno.Command(cc, {
          args: ["-std=c11", "-fsyntax-only", `${dir}/check.c`],
          stdout: "piped",
          stderr: "piped",
        }).outputSync();
        assert.ok(out.success, `${cc}:\n${new TextDecoder().decode(out.stderr)}`);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("abi: only Linux x86_64/aarch64 little-endian is described; errno names", () => {
  assert.equal(abiSupported("linux", "x86_64"), undefined);
  assert.equal(abiSupported("linux", "aarch64"), undefined);
  assert.match(abiSupported("darwin", "aarch64")!, /darwin/);
  assert.match(abiSupported("linux", "riscv64")!, /riscv64/);
  assert.equal(errnoName(98), "EADDRINUSE");
  assert.equal(errnoName(11), "EAGAIN");
  assert.equal(errnoName(4242), "errno 4242");
});
