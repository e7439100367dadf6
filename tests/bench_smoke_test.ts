/**
 * The benchmark's smoke run: `deno run -A bench/main.ts --quick` must exit 0
 * and print every row of the results table, so the script cannot rot. No
 * figure is checked: speed is measured by `deno task bench`, never asserted.
 */

import assert from "node:assert/strict";
import { canInstall, which } from "../bench/lib/tools.ts";

const BENCH = new URL("../bench/main.ts", import.meta.url).pathname;

/** The benchmark installs dnsperf and knot itself when it can (root on Debian/Ubuntu). */
const runnable = ["dnsperf", "knotd", "etcd", "etcdctl"].every((c) => which(c)) || canInstall();

/** Rows and headings the quick run prints (sizes are the --quick ones). */
const EXPECTED: RegExp[] = [
  /^# idetcd benchmark results$/m,
  /^Produced by `deno task bench --quick` on /m,
  /^## 1\. Query throughput/m,
  /^\| A: pattern names \(idetcd\) +\| [\d,]+ +\| [\d,]+ +\| [\d,]+ +\| \d+\.\d\d/m,
  /^\| SRV: skydns \(etcd\) +\| [\d,]+ +\| [\d,]+ +\| [\d,]+ +\| \d+\.\d\d/m,
  /^\| mix: 80% A\/SRV, 20% NXDOMAIN +\| [\d,]+ +\| [\d,]+ +\| [\d,]+ +\| \d+\.\d\d/m,
  /^## 2\. Claim storm/m,
  /^\| idetcd, 20 claimers in one process +\| 20 +\| yes \(20\/20\) +\| 0 /m,
  /^\| original get-then-put, 20 claimers in one process +\| 20 +\| /m,
  /^\| idetcd, 3 node processes +\| 3 +\| yes \(3\/3\) +\| 0 /m,
  /^\| original get-then-put, 3 processes +\| 3 +\| /m,
  /^## 3\. Propagation/m,
  /^\| skydns put -> A answer +\| 20 +\| [\d.]+ ms +\| /m,
  /^\| claim by another node -> A answer +\| 10 +\| [\d.]+ ms +\| /m,
  /^## 4\. Scale/m,
  /^\| 1,000 +\| [\d.]+ s +\| [\d.,]+ ms +\| [\d.]+ MiB +\| [\d.]+ MiB \/ [\d.]+ MiB +\| [\d,]+ +\| /m,
];

Deno.test({
  name: "bench: `--quick` runs every section and prints the results table",
  ignore: !runnable,
  async fn() {
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
    assert.doesNotMatch(stdout, /^## Failures/m, stdout);
    for (const row of EXPECTED) assert.match(stdout, row, `missing ${row} in:\n${stdout}`);
  },
});

if (!runnable) {
  console.error(
    "bench smoke ignored: dnsperf/knotd/etcd missing and not installable here " +
      "(run as root on Debian/Ubuntu, or `apt-get install dnsperf knot etcd-server etcd-client`)",
  );
}
