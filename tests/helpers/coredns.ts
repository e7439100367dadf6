/**
 * The real CoreDNS for tests that compare against it or use it as a peer.
 *
 * The binary is not part of the project: its path comes from `COREDNS_BIN`
 * (relative paths are taken from the working directory). Without it, tests
 * that need it are registered with `ignore: true` and a name that says so,
 * so a run reports them as ignored, never as passed. A `COREDNS_BIN` that
 * names no file is a configuration error and fails loudly.
 *
 * @module
 */

import { encodeQuery } from "../../lib/dns/wire.ts";
import { Type } from "../../lib/dns/types.ts";
import { Child } from "./child.ts";
import { UdpClient } from "./exchange.ts";
import { waitFor } from "./wait.ts";

/** Absolute path of the CoreDNS binary from `COREDNS_BIN`, or undefined when unset. */
export function corednsBin(): string | undefined {
  const value = Deno.env.get("COREDNS_BIN");
  if (!value) return undefined;
  const path = value.startsWith("/") ? value : `${Deno.cwd()}/${value}`;
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // reported below
  }
  throw new Error(`COREDNS_BIN=${value} is not a file (resolved to ${path})`);
}

/**
 * `Deno.test` for a test that needs CoreDNS: ignored, with the reason in
 * its name, when `COREDNS_BIN` is unset.
 */
export function corednsTest(name: string, fn: (bin: string, t: Deno.TestContext) => Promise<void>) {
  const bin = corednsBin();
  Deno.test({
    name: bin ? name : `${name} (ignored: COREDNS_BIN is not set)`,
    ignore: bin === undefined,
    fn: (t) => fn(bin!, t),
  });
}

/** A running CoreDNS. */
export interface CoreDNSProcess {
  /** The DNS port it serves (UDP and TCP). */
  readonly port: number;
  /** Everything it printed so far. */
  output(): string;
  /** SIGTERM, then waits for the exit (also when it has exited already). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts `bin -conf <corefile>` (the Corefile text is written to a temp
 * dir, with `files` beside it, such as zone files) and waits until it
 * answers a query on `port`.
 */
export async function startCoreDNS(
  bin: string,
  corefile: string,
  port: number,
  files: Record<string, string> = {},
): Promise<CoreDNSProcess> {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-test-coredns-" });
  await Deno.writeTextFile(`${dir}/Corefile`, corefile);
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  const child = await Child.spawn(bin, ["-conf", `${dir}/Corefile`], {
    label: "CoreDNS",
    cwd: dir,
  });
  const dispose = async () => {
    await child.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const probe = new UdpClient("127.0.0.1", port);
  try {
    await waitFor(async () => {
      if (!child.running) throw new Error(`CoreDNS exited during start:\n${child.output()}`);
      const reply = await probe.exchange(encodeQuery(1, "probe.invalid.", Type.A), {
        timeoutMs: 200,
        tries: 1,
      });
      return reply !== null;
    }, { timeoutMs: 20_000, what: `CoreDNS on port ${port}; output:\n${child.output()}` });
  } catch (err) {
    await probe.close();
    await dispose();
    throw err;
  }
  await probe.close();
  return { port, output: () => child.output(), [Symbol.asyncDispose]: dispose };
}
