import assert from "node:assert/strict";
import { composeChain } from "./config.ts";
import type { FastObserver, Plugin, Request, Written } from "./plugin.ts";
import { Type } from "../dns/types.ts";

/** A request that records what observers were registered on it. */
function request(): Request & { observers: ((w: Written) => FastObserver | void)[] } {
  const observers: ((w: Written) => FastObserver | void)[] = [];
  return {
    id: 1,
    opcode: 0,
    rd: true,
    cd: false,
    ad: false,
    question: { name: "a.example.", type: Type.A, class: 1 },
    qname: "a.example.",
    edns: null,
    transport: "udp",
    remoteAddress: "127.0.0.1",
    remotePort: 1,
    localAddress: "127.0.0.1",
    localPort: 53,
    size: 28,
    zone: ".",
    depth: 0,
    lookup: () => Promise.reject(new Error("unused")),
    observe: (fn) => {
      observers.push(fn);
    },
    observers,
  };
}

const passing = (name: string): Plugin => ({ name, serve: (req, next) => next(req) });
const answering: Plugin = {
  name: "answer",
  serve: () =>
    Promise.resolve({ rcode: 0, authoritative: true, answer: [], authority: [], additional: [] }),
};

Deno.test("composeChain: a chain whose first plugin needs the full path has no fast path", () => {
  assert.equal(
    composeChain([passing("log"), answering], ["needs-full-path", "pure-answer"]).fast,
    false,
  );
  assert.equal(
    composeChain([passing("x"), answering], [undefined, "pure-answer"]).fast,
    false,
    "undeclared counts as needing it",
  );
  assert.equal(
    composeChain([passing("errors"), answering], ["passes-through", "pure-answer"]).fast,
    true,
  );
  assert.equal(composeChain([], []).fast, false);
});

Deno.test("composeChain: a plugin that needs the full path marks every query it sees, no other", async () => {
  const chain = composeChain(
    [passing("prometheus"), passing("log"), answering],
    ["observes-reply", "needs-full-path", "pure-answer"],
  );
  const req = request();
  await chain.handler!(req);
  assert.equal(req.observers.length, 1, "log's mark");
  assert.equal(req.observers[0]({} as Written), undefined, "the mark gives no fast observer");
  const quiet = composeChain([passing("errors"), answering], ["passes-through", "pure-answer"]);
  const other = request();
  await quiet.handler!(other);
  assert.equal(other.observers.length, 0);
});
