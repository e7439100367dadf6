/**
 * health, ready and prometheus in the real program: HTTP endpoints next to
 * a DNS server driven by real queries, and what they say while stopping.
 */

import assert from "node:assert/strict";
import { Rcode, Type } from "../lib/dns/types.ts";
import { queryUdp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

/** Removes the temp folder of a Corefile written by writeCorefile when disposed. */
function cleanup(conf: string): AsyncDisposable {
  return {
    [Symbol.asyncDispose]: () =>
      Deno.remove(conf.slice(0, conf.lastIndexOf("/")), { recursive: true }),
  };
}

async function get(url: string): Promise<[number, string]> {
  const res = await fetch(url);
  return [res.status, await res.text()];
}

/** The value of the sample `name{labels}` in `text`, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

Deno.test({
  name: "observability: /health, /ready and /metrics of a running server; lameduck on SIGTERM",
  async fn() {
    const [dns, health, ready, metrics] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const conf = await writeCorefile(
      `example.org:${dns} {
    health 127.0.0.1:${health} {
        lameduck 2s
    }
    ready 127.0.0.1:${ready}
    prometheus 127.0.0.1:${metrics}
    whoami
}
example.net:${dns} {
    prometheus 127.0.0.1:${metrics}
    log
    whoami
}
`,
    );
    await using _cleanup = cleanup(conf);
    await using server = await startServer(conf);
    assert.deepEqual(await get(`http://127.0.0.1:${health}/health`), [200, "OK"]);
    assert.deepEqual(await get(`http://127.0.0.1:${ready}/ready`), [200, "OK"]);

    assert.equal((await queryUdp("127.0.0.1", dns, "a.example.org.", Type.A)).rcode, Rcode.Success);
    assert.equal((await queryUdp("127.0.0.1", dns, "a.example.org.", Type.A)).rcode, Rcode.Success);
    assert.equal(
      (await queryUdp("127.0.0.1", dns, "b.example.net.", Type.AAAA)).rcode,
      Rcode.Success,
    );
    assert.equal((await queryUdp("127.0.0.1", dns, "other.com.", Type.A)).rcode, Rcode.Refused);

    const res = await fetch(`http://127.0.0.1:${metrics}/metrics`);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const s = `server="dns://:${dns}"`;
    const org = `${s},zone="example.org.",view=""`;
    const net = `${s},zone="example.net.",view=""`;
    const dropped = `${s},zone="dropped",view=""`;
    const requests = "coredns_dns_requests_total";
    assert.equal(sample(text, requests, `${org},proto="udp",family="1",type="A"`), 2);
    assert.equal(sample(text, requests, `${net},proto="udp",family="1",type="AAAA"`), 1);
    assert.equal(sample(text, requests, `${dropped},proto="udp",family="1",type="A"`), 1);
    const responses = "coredns_dns_responses_total";
    assert.equal(sample(text, responses, `${org},rcode="NOERROR",plugin="whoami"`), 2);
    assert.equal(sample(text, responses, `${dropped},rcode="REFUSED",plugin=""`), 1);
    assert.equal(sample(text, "coredns_dns_request_duration_seconds_count", `${org},type="A"`), 2);
    assert.equal(sample(text, "coredns_plugin_enabled", `${org},name="prometheus"`), 1);
    assert.equal(sample(text, "coredns_plugin_enabled", `${net},name="log"`), 1);
    assert.equal(sample(text, "coredns_plugin_enabled", `${org},name="log"`), undefined);
    assert.match(
      text,
      /^coredns_build_info\{version="[^"]+",revision="[^"]*",goversion="deno[^"]+"\} 1$/m,
    );
    assert.match(text, /^coredns_panics_total 0$/m);

    // SIGTERM: /ready says so at once, while /health and DNS keep answering through
    // the lameduck (as in CoreDNS), then everything stops.
    server.kill("SIGTERM");
    await server.waitForOutput("[INFO] plugin/health: Going into lameduck mode for 2s");
    assert.deepEqual(await get(`http://127.0.0.1:${health}/health`), [200, "OK"]);
    assert.deepEqual(await get(`http://127.0.0.1:${ready}/ready`), [503, "Shutting down"]);
    const during = await queryUdp("127.0.0.1", dns, "lameduck.example.org.", Type.A);
    assert.equal(during.rcode, Rcode.Success);
    assert.equal(await server.exited, 0);
    await assert.rejects(fetch(`http://127.0.0.1:${health}/health`));
  },
});

Deno.test({
  name: "observability: a busy metrics address fails the start with a one-line reason",
  async fn() {
    const [dns, metrics] = [await freePort(), await freePort()];
    using _busy = Deno.listen({ hostname: "127.0.0.1", port: metrics });
    const conf = await writeCorefile(
      `.:${dns} {\n    prometheus 127.0.0.1:${metrics}\n    whoami\n}\n`,
    );
    await using _cleanup = cleanup(conf);
    await using server = await startServer(conf, { readyText: null });
    assert.equal(await server.exited, 1);
    assert.match(
      server.output(),
      new RegExp(
        `plugin/prometheus: listen tcp 127\\.0\\.0\\.1:${metrics}: Address already in use`,
      ),
    );
  },
});

Deno.test({
  name: "observability: health and ready survive a reload that keeps their addresses",
  ignore: Deno.build.os === "windows",
  async fn() {
    const [dns, health, ready] = [await freePort(), await freePort(), await freePort()];
    const body = (zone: string) =>
      `${zone}:${dns} {\n    health 127.0.0.1:${health}\n    ready 127.0.0.1:${ready}\n    whoami\n}\n`;
    const conf = await writeCorefile(body("example.org"));
    await using _cleanup = cleanup(conf);
    await using server = await startServer(conf);
    await Deno.writeTextFile(conf, body("example.net"));
    server.kill("SIGUSR1");
    await server.waitForOutput("reloaded configuration (SIGUSR1)");
    assert.deepEqual(await get(`http://127.0.0.1:${health}/health`), [200, "OK"]);
    assert.deepEqual(await get(`http://127.0.0.1:${ready}/ready`), [200, "OK"]);
    await waitFor(
      async () =>
        (await queryUdp("127.0.0.1", dns, "a.example.net.", Type.A)).rcode === Rcode.Success,
      { what: "the new zone" },
    );
    assert.doesNotMatch(server.output(), /lameduck|Shutting down/);
  },
});
