/**
 * Finding and reading the Corefile, with CoreDNS's default when there is none.
 *
 * @module
 */

import { parseCorefile } from "../corefile/parser.ts";
import type { ServerBlock } from "../corefile/types.ts";
import type { PluginDefinition } from "./plugin.ts";

/** A Corefile as read: its text, where it came from, and its server blocks. */
export interface LoadedCorefile {
  /** Path as given, "stdin", or "default". */
  source: string;
  /** Folder relative paths in it are resolved against. */
  dir: string;
  /** The text as read, or the built-in default when no Corefile was found. */
  text: string;
  /** The parsed server blocks, in file order. */
  blocks: ServerBlock[];
}

/** CoreDNS's built-in configuration, used when no Corefile is found. */
export function defaultCorefile(port: number): string {
  return `.:${port} {\nwhoami\nlog\n}\n`;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return Deno.cwd();
  const dir = path.slice(0, i) || "/";
  return dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
}

/**
 * Reads the Corefile. `conf` is a path, "stdin", or undefined for
 * `./Corefile`; when that default is missing (or yields no server block)
 * CoreDNS's default configuration applies. A directive is known when one
 * of `plugins` (the composition root's list) has its name. Throws
 * CorefileError or a one-line Error naming the file.
 */
export async function loadCorefile(
  conf: string | undefined,
  port: number,
  plugins: readonly PluginDefinition[],
): Promise<LoadedCorefile> {
  const names = new Set(plugins.map((p) => p.name));
  const isDirective = (name: string) => names.has(name);
  let source: string;
  let text: string;
  if (conf === "stdin") {
    source = "stdin";
    text = await new Response(Deno.stdin.readable).text();
  } else if (conf !== undefined) {
    source = conf;
    try {
      text = await Deno.readTextFile(conf);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new Error(`open ${conf}: no such file or directory`);
      }
      throw new Error(`open ${conf}: ${(err as Error).message}`);
    }
  } else {
    // Under `deno task start` (and `npm run`), INIT_CWD is the folder the user ran it from.
    const base = Deno.env.get("INIT_CWD");
    source = base ? `${base}/Corefile` : "Corefile";
    try {
      text = await Deno.readTextFile(source);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new Error(`open Corefile: ${(err as Error).message}`);
      }
      source = "default";
      text = defaultCorefile(port);
    }
  }
  const defaultDir = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const dir = source === "stdin" || source === "default" ? defaultDir : dirOf(source);
  const fileName = source === "default" ? "Corefile" : source;
  let blocks = parseCorefile(text, fileName, { isDirective });
  if (blocks.length === 0) {
    text = defaultCorefile(port);
    source = "default";
    blocks = parseCorefile(text, "Corefile", { isDirective });
  }
  return { source, dir, text, blocks };
}
