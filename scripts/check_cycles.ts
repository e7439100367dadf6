/**
 * `deno run -A scripts/check_cycles.ts`: fails when the project's module
 * graph has an import cycle, and lists each cycle module by module.
 *
 * A cycle is how `lib/plugins/ready/mod.ts` once threw `ReferenceError:
 * Cannot access 'readyPlugin' before initialization` when imported first:
 * which module of a cycle finishes evaluating first depends on who imports
 * it, so a cycle works or crashes by import order. Type-only imports
 * (`import type`) and dynamic `import()` count too: they do not crash
 * today, but they are the layering going both ways, and the next value
 * import along the same edge would. (Deno std runs the same kind of check,
 * `check_circular_package_dependencies`, over its packages.)
 *
 * The graph is Deno's own (`deno info --json`), walked from main.ts and
 * every module under lib/, tests/, scripts/ and bench/, so it resolves
 * imports exactly as `deno run` and `deno check` do. Only the project's own
 * files count; npm and remote packages are leaves.
 *
 * @module
 */

import { fileURLToPath, pathToFileURL } from "node:url";
import { join, relative } from "node:path";

/** The project root (this file is scripts/check_cycles.ts). */
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Where the walk starts: the program and every folder of modules. */
export const ROOTS = ["main.ts", "lib", "tests", "scripts", "bench"] as const;

/** File names `deno info` treats as modules. */
const MODULE_FILE = /\.(ts|tsx|mts|js|mjs|jsx)$/;

/** How one module reaches another. */
export type EdgeKind = "value" | "type" | "dynamic";

/** One import between two of the project's modules. */
export interface Edge {
  to: string;
  kind: EdgeKind;
}

/** The project's module graph: module URL -> its imports of project modules. */
export type Graph = Map<string, Edge[]>;

/** The part of `deno info --json` this script reads. */
interface DenoInfo {
  modules: {
    specifier: string;
    dependencies?: {
      isDynamic?: boolean;
      code?: { specifier?: string };
      type?: { specifier?: string };
    }[];
  }[];
}

/** Every module file under `dir` (recursively), as absolute paths, in a stable order. */
function moduleFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...moduleFiles(path));
    else if (entry.isFile && MODULE_FILE.test(entry.name)) out.push(path);
  }
  return out.sort();
}

/**
 * The graph of the project's own modules, from the `deno info --json` of
 * one synthetic root that imports every starting module (one `deno info`
 * instead of one per file).
 */
export async function projectGraph(root = ROOT): Promise<Graph> {
  const starts: string[] = [];
  for (const entry of ROOTS) {
    const path = join(root, entry);
    let isDirectory;
    try {
      isDirectory = Deno.statSync(path).isDirectory;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // a project without bench/, say
      throw err;
    }
    starts.push(...(isDirectory ? moduleFiles(path) : [path]));
  }
  const dir = await Deno.makeTempDir({ prefix: "idetcd-cycles-" });
  try {
    const synthetic = join(dir, "all.ts");
    const lines = starts.map((p) => `import ${JSON.stringify(pathToFileURL(p).href)};`);
    await Deno.writeTextFile(synthetic, lines.join("\n") + "\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", join(root, "deno.json"), synthetic],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`deno info failed:\n${new TextDecoder().decode(out.stderr)}`);
    }
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as DenoInfo;
    const own = (specifier: string | undefined) =>
      specifier !== undefined && specifier.startsWith(pathToFileURL(root).href);
    const syntheticUrl = pathToFileURL(synthetic).href;
    const graph: Graph = new Map();
    for (const m of info.modules) {
      if (m.specifier === syntheticUrl || !own(m.specifier)) continue;
      const edges: Edge[] = [];
      for (const dep of m.dependencies ?? []) {
        const code = dep.code?.specifier;
        const type = dep.type?.specifier;
        if (own(code)) edges.push({ to: code!, kind: dep.isDynamic ? "dynamic" : "value" });
        else if (own(type)) edges.push({ to: type!, kind: "type" });
      }
      graph.set(m.specifier, edges);
    }
    return graph;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** One import cycle: a closed path, and every module tangled with it. */
export interface Cycle {
  /** Module URLs along the path; the first is repeated at the end. */
  path: string[];
  /** How each module of `path` imports the next. */
  kinds: EdgeKind[];
  /** Every module of the strongly connected component the path runs through, sorted. */
  component: string[];
}

/**
 * The cycles of `graph`: one per strongly connected component that has one
 * (Tarjan's algorithm), each as the modules along one closed path, the
 * first repeated at the end. Components, and the path within each, are in
 * a deterministic order.
 */
export function findCycles(graph: Graph): Cycle[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  // Iterative, so a deep import chain cannot overflow the call stack.
  for (const start of [...graph.keys()].sort()) {
    if (index.has(start)) continue;
    const work: { node: string; edge: number }[] = [{ node: start, edge: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length) {
      const frame = work[work.length - 1];
      const edges = graph.get(frame.node) ?? [];
      if (frame.edge < edges.length) {
        const to = edges[frame.edge++].to;
        if (!index.has(to)) {
          index.set(to, next);
          low.set(to, next++);
          stack.push(to);
          onStack.add(to);
          work.push({ node: to, edge: 0 });
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        const selfLoop = (graph.get(frame.node) ?? []).some((e) => e.to === frame.node);
        if (component.length > 1 || selfLoop) components.push(component.sort());
      }
    }
  }
  return components.sort((a, b) => a[0].localeCompare(b[0])).map((c) => closedPath(graph, c));
}

/** A shortest closed path through the component's first module, staying inside the component. */
function closedPath(graph: Graph, component: string[]): Cycle {
  const inside = new Set(component);
  const start = component[0];
  // Breadth-first from start until an edge leads back to it: the shortest way round.
  const from = new Map<string, { prev: string; kind: EdgeKind }>();
  const queue: string[] = [start];
  search: while (queue.length) {
    const node = queue.shift()!;
    for (const { to, kind } of graph.get(node) ?? []) {
      if (!inside.has(to) || from.has(to)) continue;
      from.set(to, { prev: node, kind });
      if (to === start) break search;
      queue.push(to);
    }
  }
  const path = [start];
  const kinds: EdgeKind[] = [];
  let node = start;
  do {
    const step = from.get(node)!;
    path.unshift(step.prev);
    kinds.unshift(step.kind);
    node = step.prev;
  } while (node !== start);
  return { path, kinds, component };
}

/** One cycle as lines: each module relative to the root, with how it imports the next. */
export function describeCycle(cycle: Cycle, root = ROOT): string {
  const name = (url: string) => relative(root, fileURLToPath(url));
  const lines = [`  ${name(cycle.path[0])}`];
  for (let i = 1; i < cycle.path.length; i++) {
    const how = cycle.kinds[i - 1] === "value" ? "imports" : `imports (${cycle.kinds[i - 1]})`;
    lines.push(`    ${how} ${name(cycle.path[i])}`);
  }
  const others = cycle.component.filter((m) => !cycle.path.includes(m));
  if (others.length) {
    // Breaking the path shown may leave these in another cycle: name them all at once.
    lines.push(`  also in this tangle: ${others.map(name).join(", ")}`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const graph = await projectGraph();
  const cycles = findCycles(graph);
  if (cycles.length === 0) {
    console.log(`check_cycles: ${graph.size} modules, no import cycle`);
  } else {
    console.error(
      `check_cycles: ${cycles.length} import cycle${cycles.length === 1 ? "" : "s"} ` +
        `among ${graph.size} modules:`,
    );
    for (const cycle of cycles) console.error(describeCycle(cycle));
    Deno.exit(1);
  }
}
