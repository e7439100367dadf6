/**
 * Starts a real etcd cluster for a test: N members of the `etcd` binary from
 * PATH on free loopback ports, optionally with TLS on the client port. Members
 * can be killed, frozen (SIGSTOP) and started again to test failover. No mock
 * stands in for etcd.
 *
 * @module
 */

import { Child } from "./child.ts";
import { freePort, waitFor } from "./wait.ts";

/** TLS for the members' client port. */
export interface ClusterTls {
  /** Server certificate (PEM file). */
  cert: string;
  /** Its key (PEM file). */
  key: string;
  /** CA that signs accepted client certificates (--trusted-ca-file). */
  ca: string;
  /** Require a client certificate (--client-cert-auth). */
  clientCertAuth?: boolean;
  /** Client certificate etcdctl uses for health checks when clientCertAuth is on. */
  ctlCert?: string;
  /** Its key. */
  ctlKey?: string;
}

/** Options for {@link startEtcdCluster}. */
export interface ClusterOptions {
  /** Number of members (default 3). */
  size?: number;
  /** TLS on the client URLs (https://); peers stay plain. */
  tls?: ClusterTls;
  /** Extra flags for every member. */
  args?: string[];
}

/** One member of a test cluster. */
export interface EtcdMember {
  /** Member name (m0, m1, ...). */
  readonly name: string;
  /** Client URL, e.g. "http://127.0.0.1:40123". */
  readonly endpoint: string;
  /** Client port on 127.0.0.1. */
  readonly clientPort: number;
  /** The process ID while running. */
  readonly pid: number | undefined;
  /** True between start and exit. */
  readonly running: boolean;
  /** True between {@link EtcdMember.freeze} and {@link EtcdMember.thaw}. */
  readonly frozen: boolean;
  /** SIGKILL, waits for the exit (data is kept for `start`). */
  kill(): Promise<void>;
  /** SIGSTOP: the process stops answering; the kernel still accepts connections. */
  freeze(): void;
  /** SIGCONT after {@link freeze}. */
  thaw(): void;
  /** Starts the member again on the same ports with the same data. */
  start(): Promise<void>;
}

/** A running test cluster. */
export interface TestEtcdCluster {
  /** Every member, in start order. */
  readonly members: readonly EtcdMember[];
  /** Every member's client URL. */
  readonly endpoints: readonly string[];
  /** Runs `etcdctl` against the given members (default: all) and returns stdout. */
  ctl(args: string[], members?: readonly EtcdMember[]): Promise<string>;
  /** The current leader among the running members, waiting until there is one. */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** Stops every member and removes the data. */
  [Symbol.asyncDispose](): Promise<void>;
}

interface StatusEntry {
  Endpoint: string;
  Status: { header: { member_id: string }; leader: string };
}

/** Starts a cluster and waits until every member is healthy and there is a leader. */
export async function startEtcdCluster(options: ClusterOptions = {}): Promise<TestEtcdCluster> {
  const size = options.size ?? 3;
  const tls = options.tls;
  const scheme = tls ? "https" : "http";
  const base = await Deno.makeTempDir({ prefix: "idetcd-test-cluster-" });
  const specs: { name: string; clientPort: number; peerPort: number; dataDir: string }[] = [];
  for (let i = 0; i < size; i++) {
    specs.push({
      name: `m${i}`,
      clientPort: await freePort(),
      peerPort: await freePort(),
      dataDir: `${base}/m${i}`,
    });
  }
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(",");
  const token = `idetcd-test-${crypto.randomUUID()}`;

  const ctl = async (args: string[], on: readonly EtcdMember[] = members) => {
    const tlsArgs = tls
      ? [
        `--cacert=${tls.ca}`,
        ...(tls.ctlCert ? [`--cert=${tls.ctlCert}`, `--key=${tls.ctlKey}`] : []),
      ]
      : [];
    const out = await new Deno.Command("etcdctl", {
      args: [
        `--endpoints=${on.map((m) => m.endpoint).join(",")}`,
        "--dial-timeout=1s",
        "--command-timeout=3s",
        ...tlsArgs,
        ...args,
      ],
      env: { ETCDCTL_API: "3" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`etcdctl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
    return new TextDecoder().decode(out.stdout);
  };

  const members: EtcdMember[] = specs.map((spec) => {
    const endpoint = `${scheme}://127.0.0.1:${spec.clientPort}`;
    let child: Child | undefined;
    let exited: Promise<unknown> = Promise.resolve();
    let frozen = false;
    const member: EtcdMember = {
      name: spec.name,
      endpoint,
      clientPort: spec.clientPort,
      get pid() {
        return child?.pid;
      },
      get running() {
        return child !== undefined;
      },
      get frozen() {
        return frozen;
      },
      async kill() {
        const proc = child;
        if (!proc) return;
        proc.signal("SIGKILL");
        await exited;
        frozen = false;
      },
      freeze() {
        child?.signal("SIGSTOP");
        frozen = child !== undefined;
      },
      thaw() {
        child?.signal("SIGCONT");
        frozen = false;
      },
      async start() {
        if (child) return;
        const args = [
          `--name=${spec.name}`,
          `--data-dir=${spec.dataDir}`,
          `--listen-client-urls=${endpoint}`,
          `--advertise-client-urls=${endpoint}`,
          `--listen-peer-urls=http://127.0.0.1:${spec.peerPort}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${spec.peerPort}`,
          `--initial-cluster=${initialCluster}`,
          `--initial-cluster-token=${token}`,
          "--initial-cluster-state=new",
          "--log-level=error",
          "--logger=zap",
          ...(tls
            ? [
              `--cert-file=${tls.cert}`,
              `--key-file=${tls.key}`,
              `--trusted-ca-file=${tls.ca}`,
              ...(tls.clientCertAuth ? ["--client-cert-auth"] : []),
            ]
            : []),
          ...(options.args ?? []),
        ];
        const proc = await Child.spawn("etcd", args, {
          label: `etcd member ${spec.name}`,
          maxOutput: 1_000_000,
        });
        child = proc;
        exited = proc.status.then(() => {
          if (child === proc) child = undefined;
        });
        await waitFor(async () => {
          if (child !== proc) {
            throw new Error(
              `etcd member ${spec.name} exited during start (${proc.describeExit()}):\n${proc.tail()}`,
            );
          }
          try {
            await ctl(["endpoint", "health"], [member]);
            return true;
          } catch {
            return false;
          }
        }, { timeoutMs: 30_000, intervalMs: 50, what: `etcd member ${spec.name} on ${endpoint}` });
      },
    };
    return member;
  });

  const leader = async (timeoutMs = 15_000) => {
    return await waitFor(async () => {
      const running = members.filter((m) => m.running && !m.frozen);
      if (running.length === 0) throw new Error("no member is running");
      // One etcdctl per member: a dead or frozen member must not hide the others' answers.
      const answers = await Promise.all(running.map(async (member) => {
        try {
          // Member IDs are uint64: keep them as strings, not lossy JSON numbers.
          const text = await ctl(["endpoint", "status", "-w", "json"], [member]);
          const entries: StatusEntry[] = JSON.parse(
            text.replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"'),
          );
          return { member, status: entries[0]?.Status };
        } catch {
          return undefined;
        }
      }));
      const leaderIds = new Set(
        answers.map((a) => a?.status?.leader).filter((id) => id && id !== "0"),
      );
      if (leaderIds.size !== 1) return undefined;
      const [leaderId] = leaderIds;
      return answers.find((a) => a?.status?.header.member_id === leaderId)?.member;
    }, { timeoutMs, intervalMs: 50, what: "an etcd leader" });
  };

  const dispose = async () => {
    await Promise.all(members.map((m) => m.kill()));
    await Deno.remove(base, { recursive: true }).catch(() => {});
  };

  try {
    // Members of a new cluster wait for each other: start them all at once.
    await Promise.all(members.map((m) => m.start()));
    await leader();
  } catch (err) {
    await dispose();
    throw err;
  }
  return {
    members,
    endpoints: members.map((m) => m.endpoint),
    ctl,
    leader,
    [Symbol.asyncDispose]: dispose,
  };
}
