/**
 * The etcd client is loaded only for Corefiles that use an etcd-backed
 * plugin: npm:etcd3 (with grpc-js and protobufjs, tens of MB resident) must
 * not be in the static import graph of main.ts, only behind the dynamic
 * imports in the `etcd` and `idetcd` setups. Checked on the module graph
 * Deno builds (`deno info --json`), which is what a process loads at start.
 *
 * @module
 */

import assert from "node:assert/strict";

interface Dependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}
interface ModuleInfo {
  specifier: string;
  dependencies?: Dependency[];
}

const ROOT = new URL("../../../main.ts", import.meta.url).href;
const HEAVY = ["npm:etcd3", "npm:cockatiel", "npm:@grpc/grpc-js", "npm:protobufjs"];

/** Every module reachable from main.ts, and which of them only through a dynamic import. */
async function graph(): Promise<{ eager: Map<string, string>; lazy: Set<string> }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", ROOT],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: ModuleInfo[] };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  // Module -> the module that imported it first (for the failure message).
  const eager = new Map<string, string>([[ROOT, ""]]);
  const lazy = new Set<string>();
  const walk = (from: string, dynamic: boolean) => {
    for (const dep of modules.get(from)?.dependencies ?? []) {
      const target = dep.code?.specifier;
      if (target === undefined) continue;
      if (dynamic || dep.isDynamic) {
        if (eager.has(target) || lazy.has(target)) continue;
        lazy.add(target);
        walk(target, true);
      } else if (!eager.has(target)) {
        eager.set(target, from);
        lazy.delete(target);
        walk(target, false);
      }
    }
  };
  walk(ROOT, false);
  return { eager, lazy };
}

/** The import chain from main.ts to `specifier`. */
function chain(eager: Map<string, string>, specifier: string): string {
  const path = [specifier];
  for (let at = eager.get(specifier); at; at = eager.get(at)) path.push(at);
  return path.reverse().join(" -> ");
}

Deno.test("main.ts loads the etcd client only behind the etcd-backed plugins' setups", async () => {
  const { eager, lazy } = await graph();
  for (const specifier of eager.keys()) {
    const heavy = HEAVY.find((h) => specifier.startsWith(h));
    assert.equal(heavy, undefined, `${heavy} is imported at start: ${chain(eager, specifier)}`);
    assert.ok(
      !specifier.endsWith("/lib/etcd/client.ts"),
      `the etcd client is imported at start: ${chain(eager, specifier)}`,
    );
  }
  // ...and it is still in the program (deno compile includes it), behind a dynamic import.
  assert.ok([...lazy].some((s) => s.startsWith("npm:etcd3")), "npm:etcd3 is not in the graph");
  for (const setup of ["lib/plugins/etcd/setup.ts", "lib/plugins/idetcd/plugin.ts"]) {
    assert.ok([...lazy].some((s) => s.endsWith(setup)), `${setup} is not imported lazily`);
  }
});
