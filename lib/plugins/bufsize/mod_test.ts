import assert from "node:assert/strict";
import type { Token } from "../../corefile/types.ts";
import { Type } from "../../dns/types.ts";
import type { OPTData } from "../../dns/types.ts";
import { decodeMessage, encodeQuery } from "../../dns/wire.ts";
import { createLogger } from "../../log.ts";
import { buildConfig } from "../../server/config.ts";
import { Dispatcher, type Peer } from "../../server/dispatch.ts";
import type { PluginDefinition, Reply } from "../../server/plugin.ts";
import { Resources } from "../../server/resources.ts";
import { NO_SERVER, parseSnippet } from "../health/testing.ts";
import { bufsizePlugin, parseBufsize } from "./mod.ts";

const quiet = createLogger("test", () => {});
const udpPeer: Peer = {
  transport: "udp",
  remoteAddress: "127.0.0.1",
  remotePort: 5353,
  localAddress: "127.0.0.1",
  localPort: 53,
};

/** `many`: 100 A records for any name (1,642 bytes with compression, as in the report). */
const manyPlugin: PluginDefinition = {
  name: "many",
  setup: () => ({
    name: "many",
    serve: (req) =>
      Promise.resolve<Reply>({
        rcode: 0,
        authoritative: true,
        answer: Array.from({ length: 100 }, (_, i) => ({
          name: req.question.name,
          type: Type.A,
          class: 1,
          ttl: 30,
          data: `10.0.${i >> 8}.${i & 255}`,
        })),
        authority: [],
        additional: [],
        plugin: "many",
      }),
  }),
};

/** A dispatcher for the one block `. { BODY }`, set up as the server does (bufsize, then many). */
async function serverFor(body: string): Promise<Dispatcher> {
  const config = await buildConfig(parseSnippet(`. {\n${body}\n many\n}`), {
    plugins: [bufsizePlugin, manyPlugin],
    defaultPort: 53,
    configDir: ".",
    resources: new Resources(),
    log: quiet,
    server: NO_SERVER,
  });
  return new Dispatcher(config.listeners[0], quiet);
}

async function askBig(d: Dispatcher): Promise<Uint8Array> {
  const bytes = await d.handle(encodeQuery(1, "big.example.", Type.A, { udpSize: 4096 }), udpPeer);
  assert.ok(bytes, "expected a reply");
  return bytes;
}

Deno.test("bufsize: sets the block's cap (4096 lets 1,642 bytes through; 600 truncates)", async () => {
  const m = decodeMessage(await askBig(await serverFor(" bufsize 4096")));
  assert.equal(m.truncated, false);
  assert.equal(m.answer.length, 100);
  const bytes = await askBig(await serverFor(" bufsize 600"));
  assert.ok(bytes.length <= 600);
  assert.equal((decodeMessage(bytes).additional.at(-1)?.data as OPTData).udpSize, 600);
  // The default of a bare `bufsize` is 1232.
  const p = await askBig(await serverFor(" bufsize"));
  assert.ok(p.length <= 1232 && decodeMessage(p).truncated);
  // And so is the cap of a block without it.
  const none = await askBig(await serverFor(""));
  assert.ok(none.length <= 1232 && decodeMessage(none).truncated);
  assert.equal((decodeMessage(none).additional.at(-1)?.data as OPTData).udpSize, 1232);
});

function tokens(...texts: string[]): Token[] {
  return texts.map((text) => ({ text, file: "Corefile", line: 3 }));
}

Deno.test("bufsize: CoreDNS's syntax and limits", () => {
  const parse = (...args: string[]) =>
    parseBufsize({ name: tokens("bufsize")[0], args: tokens(...args), block: null });
  assert.equal(parse(), 1232);
  assert.equal(parse("512"), 512);
  assert.equal(parse("4096"), 4096);
  assert.equal(parse("+1000"), 1000);
  for (const bad of [["511"], ["4097"], ["1e3"], ["big"], ["1232", "1232"], ["-600"]]) {
    assert.throws(
      () => parse(...bad),
      (err: Error) => /Wrong argument count or unexpected line ending after/.test(err.message),
      bad.join(" "),
    );
  }
});
