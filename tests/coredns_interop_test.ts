/**
 * Interoperability with a stock CoreDNS (`COREDNS_BIN`): names claimed by
 * idetcd nodes (`main.ts` with an `idetcd` block) resolve through CoreDNS's
 * own `etcd` plugin on the same etcd, with the same A and AAAA answers the
 * nodes give themselves, and leave CoreDNS's answers when a node stops.
 */

import assert from "node:assert/strict";
import { Rcode, type RR, Type, typeToString } from "../lib/dns/types.ts";
import { decodeMessage, encodeQuery, type Message } from "../lib/dns/wire.ts";
import { corednsTest, startCoreDNS } from "./helpers/coredns.ts";
import { startEtcd } from "./helpers/etcd.ts";
import { UdpClient } from "./helpers/exchange.ts";
import { type ServerProcess, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

const NODES = [
  { identity: "interop-a", v4: "192.0.2.41", v6: "2001:db8::41" },
  { identity: "interop-b", v4: "192.0.2.42", v6: "2001:db8::42" },
];

function answer(m: Message): string[] {
  return m.answer.map((r: RR) => `${r.name} ${r.ttl} ${typeToString(r.type)} ${r.data}`);
}

corednsTest(
  "interop: a stock CoreDNS etcd plugin resolves idetcd's claims exactly as the nodes do",
  async (bin) => {
    await using etcd = await startEtcd();
    const nodes: { proc: ServerProcess; port: number; name: string }[] = [];
    try {
      for (const node of NODES) {
        const port = await freePort();
        const conf = await writeCorefile(
          [
            `.:${port} {`,
            `    idetcd {`,
            `        endpoint ${etcd.endpoint}`,
            `        limit 5`,
            `        pattern worker{{.ID}}.tf.local.`,
            `        address ${node.v4} ${node.v6}`,
            `        identity ${node.identity}`,
            `    }`,
            `}`,
            ``,
          ].join("\n"),
        );
        const proc = await startServer(conf, { timeoutMs: 60_000 });
        nodes.push({ proc, port, name: "" });
        await proc.waitForOutput(/claimed (worker\d\.tf\.local\.)/);
        nodes.at(-1)!.name = /claimed (worker\d\.tf\.local\.)/.exec(proc.output())![1];
      }
      const corePort = await freePort();
      await using _core = await startCoreDNS(
        bin,
        `tf.local:${corePort} {\n    etcd tf.local {\n        endpoint ${etcd.endpoint}\n    }\n}\n`,
        corePort,
      );
      const core = new UdpClient("127.0.0.1", corePort);
      const own = new UdpClient("127.0.0.1", nodes[0].port);
      try {
        const ask = async (client: UdpClient, name: string, type: number) =>
          decodeMessage((await client.exchange(encodeQuery(1, name, type)))!);
        for (const [i, node] of nodes.entries()) {
          for (const type of [Type.A, Type.AAAA]) {
            const mine = await ask(own, node.name, type);
            const theirs = await ask(core, node.name, type);
            const label = `${node.name} ${typeToString(type)}`;
            assert.equal(mine.rcode, Rcode.Success, label);
            assert.deepEqual(
              mine.answer.map((r) => r.data),
              [type === Type.A ? NODES[i].v4 : NODES[i].v6],
              label,
            );
            assert.deepEqual(answer(theirs), answer(mine), `${label}: CoreDNS and the node`);
            assert.equal(theirs.rcode, mine.rcode);
            assert.equal(theirs.authoritative, mine.authoritative);
          }
        }
        // A name of the pattern nobody holds: NXDOMAIN from both.
        const free = ["worker1", "worker2", "worker3"].find((w) =>
          !nodes.some((n) => n.name.startsWith(w + "."))
        )!;
        assert.equal((await ask(own, `${free}.tf.local.`, Type.A)).rcode, Rcode.NameError);
        assert.equal((await ask(core, `${free}.tf.local.`, Type.A)).rcode, Rcode.NameError);
        // A node that stops releases its name: CoreDNS stops answering it.
        const leaving = nodes.pop()!;
        await leaving.proc[Symbol.asyncDispose]();
        await waitFor(
          async () => (await ask(core, leaving.name, Type.A)).rcode === Rcode.NameError,
          { timeoutMs: 10_000, what: `${leaving.name} gone from CoreDNS` },
        );
        assert.deepEqual(
          answer(await ask(core, nodes[0].name, Type.A)),
          answer(await ask(own, nodes[0].name, Type.A)),
        );
      } finally {
        await core.close();
        await own.close();
      }
    } finally {
      for (const node of nodes) await node.proc[Symbol.asyncDispose]();
    }
  },
);
