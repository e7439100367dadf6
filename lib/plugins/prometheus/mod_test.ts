import assert from "node:assert/strict";
import { Rcode, Type } from "../../dns/types.ts";
import { decodeMessage, encodeQuery, type Message } from "../../dns/wire.ts";
import { createLogger } from "../../log.ts";
import { Instance } from "../../server/instance.ts";
import type { PluginDefinition } from "../../server/plugin.ts";
import { qtypeLabel, serverLabel } from "../../server/vars.ts";
import { bindPlugin } from "../bind/mod.ts";
import { whoamiPlugin } from "../whoami/mod.ts";
import { queryTcp } from "../../../tests/helpers/process.ts";
import { freePort } from "../../../tests/helpers/wait.ts";
import { assertSetupError, parseSnippet } from "../health/testing.ts";
import { parsePrometheus, prometheusPlugin } from "./mod.ts";

const quiet = createLogger("", () => {});

/** One UDP query with full control of EDNS0 (DO bit). */
async function ask(port: number, name: string, type: number, dnssecOk = false): Promise<Message> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const id = Math.floor(Math.random() * 65536);
    const q = encodeQuery(id, name, type, dnssecOk ? { udpSize: 1232, dnssecOk } : {});
    await sock.send(q, { transport: "udp", hostname: "127.0.0.1", port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer for ${name}`)), 3000);
    });
    try {
      while (true) {
        const [bytes] = await Promise.race([sock.receive(), timeout]);
        const m = decodeMessage(bytes);
        if (m.id === id) return m;
      }
    } finally {
      clearTimeout(timer);
    }
  } finally {
    sock.close();
  }
}

/** A chain plugin that always throws (a CoreDNS panic). */
const erraticPlugin: PluginDefinition = {
  name: "erratic",
  setup: () => ({ name: "erratic", serve: () => Promise.reject(new Error("boom")) }),
};

/**
 * A real server (an Instance, so the startup hooks get the configuration
 * and the dispatcher reports dropped queries, as in the program):
 * prometheus + whoami for example.org., prometheus + a throwing plugin for
 * boom., both bound to 127.0.0.1.
 */
async function startServer(metricsDirective: string) {
  const port = await freePort();
  const metricsPort = await freePort();
  const metrics = metricsDirective.replace("PORT", String(metricsPort));
  const blocks = parseSnippet(
    `example.org.:${port} {\n bind 127.0.0.1\n ${metrics}\n whoami\n}\n` +
      `boom.:${port} {\n bind 127.0.0.1\n ${metrics}\n erratic\n}\n`,
  );
  const instance = new Instance({
    plugins: [bindPlugin, prometheusPlugin, whoamiPlugin, erraticPlugin],
    defaultPort: port,
    configDir: ".",
    log: quiet,
  });
  await instance.start(blocks);
  return {
    port,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    async [Symbol.asyncDispose]() {
      await instance.stop();
    },
  };
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return await res.text();
}

/** The value of the sample `name{labels}` in `text`, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

Deno.test("prometheus: /metrics counts real queries with CoreDNS's names and labels", async () => {
  await using server = await startServer("prometheus 127.0.0.1:PORT");
  const { port } = server;
  const s = `server="dns://127.0.0.1:${port}"`;
  assert.equal((await ask(port, "www.example.org.", Type.A)).rcode, Rcode.Success);
  assert.equal((await ask(port, "WWW.Example.org.", Type.A)).rcode, Rcode.Success);
  assert.equal((await ask(port, "www.example.org.", Type.AAAA, true)).rcode, Rcode.Success);
  assert.equal((await ask(port, "www.example.org.", 99)).rcode, Rcode.Success);
  assert.equal(
    (await queryTcp("127.0.0.1", port, "x.example.org.", Type.TXT)).rcode,
    Rcode.Success,
  );

  const text = await scrape(server.metricsUrl);
  const zone = `${s},zone="example.org.",view=""`;
  const requests = "coredns_dns_requests_total";
  assert.equal(sample(text, requests, `${zone},proto="udp",family="1",type="A"`), 2);
  assert.equal(sample(text, requests, `${zone},proto="udp",family="1",type="AAAA"`), 1);
  assert.equal(sample(text, requests, `${zone},proto="udp",family="1",type="other"`), 1);
  assert.equal(sample(text, requests, `${zone},proto="tcp",family="1",type="TXT"`), 1);
  assert.equal(
    sample(text, "coredns_dns_responses_total", `${zone},rcode="NOERROR",plugin="whoami"`),
    5,
  );
  assert.equal(sample(text, "coredns_dns_do_requests_total", zone), 1);
  assert.equal(sample(text, "coredns_dns_request_duration_seconds_count", `${zone},type="A"`), 2);
  assert.equal(
    sample(text, "coredns_dns_request_duration_seconds_bucket", `${zone},type="A",le="+Inf"`),
    2,
  );
  // whoami answers are well under 100 bytes; queries too.
  assert.equal(
    sample(text, "coredns_dns_response_size_bytes_bucket", `${zone},proto="udp",le="100"`),
    4,
  );
  assert.equal(sample(text, "coredns_dns_request_size_bytes_count", `${zone},proto="udp"`), 4);
  assert.equal(sample(text, "coredns_dns_request_size_bytes_count", `${zone},proto="tcp"`), 1);
  assert.match(text, /^# TYPE coredns_dns_request_duration_seconds histogram$/m);
  assert.match(text, /^coredns_panics_total \d+$/m);
  assert.match(
    text,
    /^coredns_build_info\{version="\d+\.\d+\.\d+[^"]*",revision="",goversion="deno\d[^"]*"\} 1$/m,
  );
  for (const name of ["prometheus", "whoami"]) {
    assert.equal(
      sample(text, "coredns_plugin_enabled", `${zone},name="${name}"`),
      1,
      `plugin_enabled ${name}`,
    );
  }
});

Deno.test("prometheus: queries that never enter a chain count under zone dropped; panics count", async () => {
  await using server = await startServer("prometheus 127.0.0.1:PORT");
  const { port } = server;
  const s = `server="dns://127.0.0.1:${port}"`;
  const before = await scrape(server.metricsUrl);
  const panics = (t: string) => Number(/^coredns_panics_total (\S+)$/m.exec(t)![1]);

  assert.equal((await ask(port, "example.com.", Type.A)).rcode, Rcode.Refused);
  assert.equal((await ask(port, "x.boom.", Type.MX)).rcode, Rcode.ServerFailure);

  const text = await scrape(server.metricsUrl);
  const dropped = `${s},zone="dropped",view=""`;
  assert.equal(
    sample(text, "coredns_dns_requests_total", `${dropped},proto="udp",family="1",type="A"`),
    1,
  );
  assert.equal(
    sample(text, "coredns_dns_responses_total", `${dropped},rcode="REFUSED",plugin=""`),
    1,
  );
  const boom = `${s},zone="boom.",view=""`;
  assert.equal(
    sample(text, "coredns_dns_responses_total", `${boom},rcode="SERVFAIL",plugin=""`),
    1,
  );
  assert.equal(panics(text), panics(before) + 1);
});

Deno.test("prometheus: runtime_metrics adds process figures; one server per address", async () => {
  await using server = await startServer("prometheus 127.0.0.1:PORT {\n  runtime_metrics\n }");
  const text = await scrape(server.metricsUrl);
  assert.match(text, /^process_resident_memory_bytes \d/m);
  assert.match(text, /^process_start_time_seconds \d/m);
  assert.match(text, /^deno_memory_heap_used_bytes \d/m);
  const res = await fetch(server.metricsUrl.replace("/metrics", "/"));
  assert.equal(res.status, 404);
  await res.body?.cancel();
});

Deno.test("prometheus: syntax as CoreDNS (default localhost:9153, once per block, errors)", () => {
  const parse = (text: string) => parsePrometheus(parseSnippet(text)[0].directives);
  assert.deepEqual(parse(". {\n prometheus\n}"), {
    address: { text: "localhost:9153", host: "localhost", port: 9153 },
    runtimeMetrics: false,
  });
  assert.equal(parse(". {\n prometheus :9253 {\n runtime_metrics\n }\n}").runtimeMetrics, true);
  const fails = (text: string, message: string) => assertSetupError(() => parse(text), message);
  fails(
    ". {\n prometheus\n prometheus :1\n}",
    "plugin/prometheus: Corefile:3 - Error during parsing: this plugin can only be used once per Server Block",
  );
  fails(
    ". {\n prometheus {\n  histograms\n }\n}",
    "plugin/prometheus: Corefile:3 - Error during parsing: unknown option: histograms",
  );
  fails(
    ". {\n prometheus :1 :2\n}",
    "plugin/prometheus: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after ':2'",
  );
  fails(
    ". {\n prometheus localhost\n}",
    "plugin/prometheus: Corefile:2 - Error during parsing: address localhost: missing port in address",
  );
});

Deno.test("prometheus: label helpers", () => {
  assert.equal(serverLabel("", 53), "dns://:53");
  assert.equal(serverLabel("::1", 53), "dns://[::1]:53");
  assert.equal(qtypeLabel(Type.A), "A");
  assert.equal(qtypeLabel(Type.CAA), "other");
  assert.equal(qtypeLabel(undefined), "other");
});
