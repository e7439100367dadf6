/**
 * Test support for the health, ready, prometheus and reload plugins: a real
 * SetupContext for one directive of a Corefile snippet, over a real
 * resource pool, with its startup and shutdown hooks collected.
 *
 * @module
 */

import { parseCorefile } from "../../corefile/parser.ts";
import assert from "node:assert/strict";
import { CorefileError, type ServerBlock } from "../../corefile/types.ts";
import { createLogger, type Level } from "../../log.ts";
import type { Resources } from "../../server/resources.ts";
import type {
  BlockView,
  ConfigView,
  ListenerView,
  ServerControl,
  SetupContext,
  ShutdownHook,
  StartupHook,
} from "../../server/plugin.ts";

/** A SetupContext plus what setup registered. */
export interface TestSetup {
  /** The context to pass to the plugin's setup. */
  ctx: SetupContext;
  /** The startup hooks setup registered: call each with a {@link configView}. */
  startup: StartupHook[];
  /** The shutdown hooks setup registered: call each with `{ final }`. */
  shutdown: ShutdownHook[];
  /** Log lines written through ctx.log. */
  lines: string[];
}

/**
 * A server that cannot read its Corefile or reload, as an Instance built
 * without a Corefile reader answers: the default `server` of
 * {@link setupContext}.
 */
export const NO_SERVER: ServerControl = {
  readCorefile: () => Promise.reject(new Error("no Corefile reader installed")),
  reload: () => Promise.resolve(false),
};

/** A configuration as startup hooks receive it, from the parts a test cares about. */
export function configView(parts: {
  blocks?: readonly BlockView[];
  listeners?: readonly ListenerView[];
  corefile?: readonly ServerBlock[];
}): ConfigView {
  return {
    blocks: parts.blocks ?? [],
    listeners: parts.listeners ?? [],
    corefile: parts.corefile ?? [],
  };
}

/** Parses `corefile` (every directive name allowed) and returns its blocks. */
export function parseSnippet(corefile: string): ServerBlock[] {
  return parseCorefile(corefile, "Corefile", { isDirective: () => true });
}

/**
 * A context for `directive` of the first server block of `corefile`.
 * Take `resources.scope()` first: acquire records into the newest scope.
 */
export function setupContext(
  corefile: string,
  directive: string,
  resources: Resources,
  overrides: Partial<Pick<SetupContext, "zones" | "port" | "serverOptions" | "server">> = {},
): TestSetup {
  const block = parseSnippet(corefile)[0];
  const directives = block.directives.filter((d) => d.name.text === directive);
  if (directives.length === 0) throw new Error(`no ${directive} in the snippet`);
  const startup: TestSetup["startup"] = [];
  const shutdown: TestSetup["shutdown"] = [];
  const lines: string[] = [];
  const log = createLogger(
    `plugin/${directive}`,
    (_level: Level, line: string) => lines.push(line),
  );
  const ctx: SetupContext = {
    directives,
    zones: ["."],
    port: 53,
    configDir: Deno.cwd(),
    serverOptions: { bind: [] },
    resources,
    log,
    server: NO_SERVER,
    onStartup: (fn) => startup.push(fn),
    onShutdown: (fn) => shutdown.push(fn),
    fatal: (err) => {
      throw err;
    },
    ...overrides,
  };
  return { ctx, startup, shutdown, lines };
}

/** Asserts that `setup` throws a CorefileError whose CoreDNS-style text is exactly `message`. */
export function assertSetupError(setup: () => unknown, message: string): void {
  assert.throws(setup, (err: unknown) => {
    assert.ok(err instanceof CorefileError);
    assert.equal(err.describe(), message);
    return true;
  });
}
