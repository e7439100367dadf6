/**
 * Running dnsperf and reading its summary.
 *
 * @module
 */

import type { Scope } from "./cleanup.ts";
import { spawn } from "./proc.ts";

/** The load dnsperf offers. */
export interface LoadShape {
  /** Simulated clients (-c): separate sockets. */
  clients: number;
  /** Queries in flight (-q). */
  outstanding: number;
}

/** One dnsperf run's summary. */
export interface PerfResult {
  qps: number;
  sent: number;
  completed: number;
  lost: number;
  /** Response codes, e.g. { NOERROR: 800, NXDOMAIN: 200 }. */
  rcodes: Record<string, number>;
  /** Average latency, ms. */
  latencyMs: number;
}

/** Parses dnsperf's statistics block. */
export function parseDnsperf(text: string): PerfResult {
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const qps = num(/Queries per second:\s+([\d.]+)/);
  if (!Number.isFinite(qps)) throw new Error(`no "Queries per second" in dnsperf output:\n${text}`);
  const rcodes: Record<string, number> = {};
  const codes = /Response codes:\s+(.*)/.exec(text)?.[1] ?? "";
  for (const m of codes.matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1]] = Number(m[2]);
  return {
    qps,
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    rcodes,
    latencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  };
}

/**
 * Runs dnsperf against 127.0.0.1:port for `seconds` with the query file
 * (stopped with `scope`); with `passes`, it stops sooner once it has sent the
 * file that many times (`-n`).
 */
export async function dnsperf(
  scope: Scope,
  binary: string,
  port: number,
  file: string,
  seconds: number,
  shape: LoadShape,
  passes?: number,
): Promise<PerfResult> {
  const args = [
    "-s",
    "127.0.0.1",
    "-p",
    String(port),
    "-d",
    file,
    "-l",
    String(seconds),
    "-c",
    String(shape.clients),
    "-q",
    String(shape.outstanding),
    // One sender thread: the machine has few cores and the server needs them.
    "-T",
    "1",
    // A lost query counts after 1 s rather than 5, so a stalled server shows quickly.
    "-t",
    "1",
    ...(passes ? ["-n", String(passes)] : []),
  ];
  const proc = spawn(scope, binary, args);
  const code = await proc.exited;
  const text = proc.output();
  if (code !== 0) throw new Error(`dnsperf ${args.join(" ")} exited with ${code}:\n${text}`);
  return parseDnsperf(text);
}

/** One line of a dnsperf query file. */
export interface QueryLine {
  name: string;
  type: string;
}

/** Writes a dnsperf query file ("name TYPE" per line). */
export async function writeQueryFile(path: string, queries: readonly QueryLine[]): Promise<void> {
  await Deno.writeTextFile(path, queries.map((q) => `${q.name} ${q.type}\n`).join(""));
}

/** A deterministic shuffle (mulberry32 seeded), so every run sends the same order. */
export function shuffle<T>(items: readonly T[], seed = 1): T[] {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
