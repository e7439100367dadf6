/**
 * The benchmark's smoke run: `deno run -A bench/main.ts --quick` must exit 0
 * and print every section and row of the report, so the script cannot rot.
 * No figure is checked: speed is measured by `deno task bench`, never
 * asserted. The CoreDNS side-by-side rows need a CoreDNS binary
 * (COREDNS_BIN, see bench/README.md); without one the run must say they were
 * skipped, and their test here is ignored, not passed.
 */

import assert from "node:assert/strict";
import { canInstall, which } from "../bench/lib/tools.ts";

const BENCH = new URL("../bench/main.ts", import.meta.url).pathname;

/** The benchmark installs dnsperf and knot itself when it can (root on Debian/Ubuntu). */
const runnable = ["dnsperf", "knotd", "etcd", "etcdctl"].every((c) => which(c)) || canInstall();
const coredns = Deno.env.get("COREDNS_BIN") || undefined;

const N = String.raw`[\d,]+`;
const F = String.raw`[\d.]+`;
/** A throughput row: qps, CPU µs per query, CPU used, lost, RSS idle, RSS after load. */
const perfRow = (label: string) =>
  new RegExp(
    String.raw`^\| ${label} +\| ${N} +\| ${F} +\| ${F} +\| ${N} \(${F}%\) +\| ${F} MB +\| `,
    "m",
  );

/** Rows and headings every quick run prints (sizes are the --quick ones). */
const EXPECTED: RegExp[] = [
  /^# idetcd benchmark results$/m,
  /^Produced by `deno task bench --quick` on /m,
  /^## Targets \(issue #12\): every figure next to its target$/m,
  /^\| `cache` \+ `etcd`: idetcd \(-udp batched\) \/ Knot +\| \d+\.\d\d +\| ≥ 0\.80 /m,
  /^\| RSS, idetcd \(-udp portable\), `whoami` Corefile, idle +\| [\d.]+ MB +\| ≤ 50\.0 MB /m,
  /^## 1\. Query throughput, side by side/m,
  /^\| \*\*`etcd` alone\*\* /m,
  /^\| \*\*`prometheus` \+ `errors` \+ `cache` \+ `etcd`\*\* /m,
  /^\| \*\*`idetcd` names\*\* /m,
  perfRow(String.raw`idetcd \(-udp batched\)`),
  perfRow(String.raw`idetcd \(-udp portable\)`),
  perfRow(String.raw`Knot \(1 UDP worker\), bench\.local`),
  perfRow(String.raw`echo loop, Deno\.listenDatagram \(bench/echo\.ts\)`),
  perfRow(String.raw`echo loop, FFI recvmmsg/sendmmsg \(bench/echo_ffi\.ts\)`),
  /^Before the runs, every server answered every name of its query file with the right address\.$/m,
  /^## 2\. Claim storm/m,
  /^## 3\. Propagation/m,
  /^\| skydns put -> A answer +\| 20 +\| [\d.]+ ms +\| /m,
  /^## 5\. Scale/m,
  // The last column: RSS after deleting every key, then at rest.
  /^\| 1,000 +\| batched +\| [\d.]+ s +\| [\d.,]+ ms +\| [\d.]+ MB +\| [\d.]+ MB \/ [\d.]+ MB +\| [\d,]+ +\| [\d.]+% +\| [\d.]+ MB \/ [\d.]+ MB +\|$/m,
  /^\| 1,000 +\| portable +\| /m,
  /^## 4\. Memory/m,
  // Idle twice, then each load's reading and its reading at rest.
  /^\| idetcd \(-udp batched\) +\| [\d.]+ MB +\| [\d.]+ MB +\| [\d.]+ MB \/ [\d.]+ MB +\| [\d.]+ MB \/ [\d.]+ MB \(5,000 answered/m,
  /^\| idetcd \(-udp portable\) +\| [\d.]+ MB +\| /m,
  /^\| bare Deno process \(`deno run` of an empty loop, the floor\) +\| [\d.]+ MB +\| /m,
  /^\| bare Deno \+ one etcd3 client \(bench\/floor_etcd3\.ts\) +\| – +\| [\d.]+ MB +\| /m,
];

/** With COREDNS_BIN: CoreDNS measured beside idetcd on each of the three Corefiles. */
const WITH_COREDNS: RegExp[] = [
  /^Machine: .*, CoreDNS 1\.\d+\.\d+ \(COREDNS_BIN\)\. idetcd's default UDP path /m,
  perfRow("CoreDNS"),
  /^\| `etcd` alone: idetcd \(-udp batched\) \/ CoreDNS +\| \d+\.\d\d +\| ≥ 1\.00 /m,
  /^\| `prometheus` \+ `errors` \+ `cache` \+ `etcd`: idetcd \(-udp portable\) \/ CoreDNS +\| \d+\.\d\d +\| ≥ 1\.00 /m,
  /^\| CoreDNS +\| [\d.]+ MB +\| – \(no idetcd plugin\)/m,
];

/** Without it: the same places say "skipped", and nothing claims a CoreDNS figure. */
const WITHOUT_COREDNS: RegExp[] = [
  /^Machine: .*; CoreDNS: COREDNS_BIN unset, its runs skipped\. idetcd's default UDP path /m,
  /^\| `cache` \+ `etcd`: idetcd \(-udp batched\) \/ CoreDNS +\| skipped +\| ≥ 1\.00 +\| COREDNS_BIN unset +\| skipped +\|$/m,
  /^\| CoreDNS +\| skipped \(COREDNS_BIN unset\) /m,
];

/** The one quick run both tests read (it takes about half a minute). */
let quickRun: Promise<string> | undefined;
function runQuick(): Promise<string> {
  quickRun ??= (async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", BENCH, "--quick"],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `bench --quick exited with ${out.code}:\n${stderr}\n${stdout}`);
    return stdout;
  })();
  return quickRun;
}

Deno.test({
  name: "bench: `--quick` runs every section and prints the results tables",
  ignore: !runnable,
  async fn() {
    const stdout = await runQuick();
    assert.doesNotMatch(stdout, /^## Failures/m, stdout);
    for (const row of [...EXPECTED, ...(coredns ? [] : WITHOUT_COREDNS)]) {
      assert.match(stdout, row, `missing ${row} in:\n${stdout}`);
    }
  },
});

Deno.test({
  name: "bench: `--quick` measures CoreDNS beside idetcd on the same Corefiles (COREDNS_BIN)",
  ignore: !runnable || !coredns,
  async fn() {
    const stdout = await runQuick();
    for (const row of WITH_COREDNS) assert.match(stdout, row, `missing ${row} in:\n${stdout}`);
  },
});

if (!runnable) {
  console.error(
    "bench smoke ignored: dnsperf/knotd/etcd missing and not installable here " +
      "(run as root on Debian/Ubuntu, or `apt-get install dnsperf knot etcd-server etcd-client`)",
  );
} else if (!coredns) {
  console.error(
    "bench smoke: the CoreDNS test is ignored: COREDNS_BIN is unset (bench/README.md says where " +
      "to get a CoreDNS binary)",
  );
}
