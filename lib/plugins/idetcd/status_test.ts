/**
 * `idetcd status` and `idetcd hosts` without etcd: the report built from a
 * given set of keys, its table, the argument parsing, and the atomic,
 * change-only file write. tests/idetcd_status_hosts_test.ts runs both
 * subcommands against a real etcd and real nodes.
 */

import assert from "node:assert/strict";
import type { KeyValue } from "../../etcd/types.ts";
import { HostsUsageError, parseHostsArgs, writeIfChanged } from "./hosts.ts";
import { parsePattern } from "./pattern.ts";
import { encodeAddress, encodeLock, encodeMemory, lockKey, memoryKey } from "./records.ts";
import { RoleMap } from "./roles.ts";
import { buildStatus, formatAge, formatStatus, idRanges, type StatusReport } from "./status.ts";

const pattern = parsePattern("worker{{.ID}}.tf.local.");
const PREFIX = "/skydns";
const READ = { revision: 99, at: new Date("2026-01-01T12:00:00.000Z") };

/** The keys one claimed ID has in etcd: its lock and its address records, under `lease`. */
function claim(
  id: number,
  lease: string,
  createRevision: number,
  addresses: string[],
  extra: { port?: number; claimedAt?: string } = {},
): KeyValue[] {
  const lock = lockKey(PREFIX, pattern, id);
  const kv = (key: string, value: string): KeyValue => ({
    key,
    value,
    lease,
    createRevision,
    modRevision: createRevision,
  });
  return [
    kv(
      lock,
      encodeLock({
        id,
        name: pattern.render(id),
        identity: `node-${id}`,
        addresses,
        port: extra.port,
        claimedAt: extra.claimedAt ?? "2026-01-01T11:55:00.123Z",
      }),
    ),
    ...addresses.map((a, i) => kv(`${lock}/ip${i + 1}`, encodeAddress(a, extra.port))),
  ];
}

const config = (limit: number, roles = new RoleMap([])) => ({
  limit,
  pattern,
  prefix: PREFIX,
  roles,
});

Deno.test("status: every ID 1..limit, claimed or empty; lease seconds; fence", () => {
  const kvs = [
    ...claim(1, "101", 5, ["10.0.0.1"], { port: 2222 }),
    ...claim(3, "103", 9, ["10.0.0.3", "2001:db8::3"]),
    // The lease-less "last holder" record of ID 2 is no claim.
    {
      key: memoryKey(PREFIX, pattern, 2),
      value: encodeMemory("node-2", "2026-01-01T10:00:00.000Z"),
      lease: "0",
      createRevision: 3,
      modRevision: 3,
    },
  ];
  const report = buildStatus(config(4), kvs, new Map([["101", 17], ["103", 0]]), READ);
  const want: StatusReport = {
    pattern: "worker{{.ID}}.tf.local.",
    zone: "tf.local.",
    limit: 4,
    claimed: 2,
    missing: [2, 4],
    complete: false,
    revision: 99,
    readAt: "2026-01-01T12:00:00.000Z",
    slots: [
      {
        id: 1,
        name: "worker1.tf.local.",
        role: "",
        claimed: true,
        addresses: ["10.0.0.1"],
        port: 2222,
        identity: "node-1",
        claimedAt: "2026-01-01T11:55:00.123Z",
        leaseSecondsLeft: 17,
        lease: "101",
        fence: 5,
      },
      { id: 2, name: "worker2.tf.local.", role: "", claimed: false },
      {
        id: 3,
        name: "worker3.tf.local.",
        role: "",
        claimed: true,
        addresses: ["10.0.0.3", "2001:db8::3"],
        identity: "node-3",
        claimedAt: "2026-01-01T11:55:00.123Z",
        leaseSecondsLeft: 0,
        lease: "103",
        fence: 9,
      },
      { id: 4, name: "worker4.tf.local.", role: "", claimed: false },
    ],
  };
  assert.deepEqual(report, want);
  // The JSON has no `port` key for a member that published none (not even null).
  assert.ok(!("port" in JSON.parse(JSON.stringify(report)).slots[2]));
});

Deno.test("status: complete when every ID is claimed; roles from the Corefile; a member above limit", () => {
  const roles = new RoleMap([{ name: "chief", ids: [1] }, { name: "worker", ids: [2, 3] }]);
  const kvs = [
    ...claim(1, "1", 5, ["10.0.0.1"]),
    ...claim(2, "2", 6, ["10.0.0.2"]),
    ...claim(3, "3", 7, ["10.0.0.3"], { claimedAt: "" }),
  ];
  const full = buildStatus(config(3, roles), kvs, new Map([["1", 9], ["2", 9], ["3", 9]]), READ);
  assert.equal(full.complete, true);
  assert.equal(full.claimed, 3);
  assert.deepEqual(full.missing, []);
  assert.deepEqual(full.slots.map((s) => s.role), ["chief", "worker", "worker"]);
  assert.equal(full.slots[2].claimed && full.slots[2].claimedAt, null);
  // The Corefile's limit lowered to 2: ID 3 is still shown, flagged, and counted nowhere.
  const lowered = buildStatus(config(2, roles), kvs, new Map([["1", 9], ["2", 9], ["3", 9]]), READ);
  assert.equal(lowered.complete, true);
  assert.equal(lowered.claimed, 2);
  assert.deepEqual(lowered.slots.map((s) => [s.id, s.claimed && s.overLimit]), [
    [1, undefined],
    [2, undefined],
    [3, true],
  ]);
});

Deno.test("status: a lock whose address records belong to another lease shows no addresses", () => {
  const kvs = [
    claim(1, "1", 5, [])[0],
    ...claim(1, "2", 4, ["10.0.0.9"]).slice(1), // leftovers of an older holder
  ];
  const report = buildStatus(config(1), kvs, new Map([["1", 5]]), READ);
  assert.deepEqual(report.slots[0].claimed && report.slots[0].addresses, []);
});

Deno.test("status: the table", () => {
  const roles = new RoleMap([
    { name: "chief", ids: [1] },
    { name: "worker", ids: [2, 3, 4, 5, 6, 7, 8] },
  ]);
  const kvs = [
    ...claim(1, "1", 5, ["10.0.0.1"], { claimedAt: "2026-01-01T11:59:18.500Z" }),
    ...claim(3, "3", 7, ["10.0.0.3", "2001:db8::3"], { claimedAt: "2026-01-01T09:30:00.000Z" }),
  ];
  const report = buildStatus(config(8, roles), kvs, new Map([["1", 19], ["3", 4]]), READ);
  assert.equal(
    formatStatus(report),
    [
      "ID   NAME                        ROLE    ADDRESSES             IDENTITY  CLAIMED SINCE                 LEASE",
      "1    worker1.tf.local.           chief   10.0.0.1              node-1    2026-01-01T11:59:18Z (41s)    19s",
      "2    worker2.tf.local.           worker  (empty)",
      "3    worker3.tf.local.           worker  10.0.0.3,2001:db8::3  node-3    2026-01-01T09:30:00Z (2h30m)  4s",
      "4-8  worker4..worker8.tf.local.  worker  (5 empty)",
      "2/8 claimed; empty: 2, 4-8",
      "",
    ].join("\n"),
  );
  // Without roles there is no ROLE column; two empty IDs in a row keep a row each.
  const plain = buildStatus(config(3), claim(2, "2", 6, ["10.0.0.2"]), new Map([["2", 3]]), READ);
  assert.equal(
    formatStatus(plain),
    [
      "ID  NAME               ADDRESSES  IDENTITY  CLAIMED SINCE                 LEASE",
      "1   worker1.tf.local.  (empty)",
      "2   worker2.tf.local.  10.0.0.2   node-2    2026-01-01T11:55:00Z (4m59s)  3s",
      "3   worker3.tf.local.  (empty)",
      "1/3 claimed; empty: 1, 3",
      "",
    ].join("\n"),
  );
});

Deno.test("status: ID ranges and ages", () => {
  assert.equal(idRanges([]), "");
  assert.equal(idRanges([4]), "4");
  assert.equal(idRanges([1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
  assert.equal(formatAge(0), "0s");
  assert.equal(formatAge(59_999), "59s");
  assert.equal(formatAge(60_000), "1m00s");
  assert.equal(formatAge(3_599_000), "59m59s");
  assert.equal(formatAge(3_600_000), "1h00m");
  assert.equal(formatAge(90_061_000), "1d01h");
  assert.equal(formatAge(-5_000), "0s"); // a clock behind the claimer's
});

Deno.test("hosts: arguments", () => {
  assert.deepEqual(parseHostsArgs([]), {
    format: "plain",
    slots: undefined,
    port: undefined,
    watch: undefined,
  });
  assert.deepEqual(parseHostsArgs(["--format", "mpi", "--slots", "8", "--watch", "/tmp/h"]), {
    format: "mpi",
    slots: 8,
    port: undefined,
    watch: "/tmp/h",
  });
  assert.deepEqual(parseHostsArgs(["-format=file_sd", "-port", "9100"]), {
    format: "file_sd",
    slots: undefined,
    port: 9100,
    watch: undefined,
  });
  const usage = (args: string[], message: RegExp) =>
    assert.throws(() => parseHostsArgs(args), (err) => {
      assert.ok(err instanceof HostsUsageError);
      assert.match(err.message, message);
      return true;
    });
  usage(["--format", "csv"], /unknown format "csv"; use plain, mpi, deepspeed, hosts, file_sd/);
  usage(["--format", "plain", "--slots", "2"], /--slots applies to mpi and deepspeed only/);
  usage(["--format", "mpi", "--port", "80"], /--port applies to file_sd only/);
  usage(["--format", "mpi", "--slots", "0"], /invalid value "0" for flag --slots/);
  usage(["--format", "file_sd", "--port", "65536"], /invalid value "65536" for flag --port/);
  usage(["--bogus"], /flag provided but not defined: --bogus/);
  usage(["extra"], /unexpected arguments: extra/);
  usage(["--watch", ""], /--watch needs a file name/);
});

Deno.test("hosts: the watched file is replaced atomically, and only when its content changes", () => {
  const dir = Deno.makeTempDirSync({ prefix: "idetcd-hosts-" });
  try {
    const path = `${dir}/sub/hostfile`;
    assert.equal(writeIfChanged(path, "a slots=1\n"), true);
    assert.equal(Deno.readTextFileSync(path), "a slots=1\n");
    const first = Deno.statSync(path);
    // The same content: not written (same inode, no temporary left behind).
    assert.equal(writeIfChanged(path, "a slots=1\n"), false);
    assert.equal(Deno.statSync(path).ino, first.ino);
    // New content arrives by rename: a new inode, never a truncated file in place.
    assert.equal(writeIfChanged(path, "a slots=1\nb slots=1\n"), true);
    assert.notEqual(Deno.statSync(path).ino, first.ino);
    assert.equal(Deno.readTextFileSync(path), "a slots=1\nb slots=1\n");
    assert.deepEqual([...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name), ["hostfile"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
