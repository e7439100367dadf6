import assert from "node:assert/strict";
import { Resources } from "./resources.ts";

/** A closeable that records when it was closed. */
function tracked(name: string, closed: string[]) {
  return { name, close: () => void closed.push(name) };
}

Deno.test("Resources: one object per key, shared within and across scopes", async () => {
  const closed: string[] = [];
  const resources = new Resources();
  const scope = resources.scope();
  let created = 0;
  const make = () => (created++, tracked("a", closed));
  const a1 = resources.acquire("a", make);
  const a2 = resources.acquire("a", make);
  assert.equal(a1, a2);
  assert.equal(created, 1);
  await scope.release();
  assert.deepEqual(closed, ["a"]);
  assert.equal(resources.size, 0);
});

Deno.test("Resources: a reload keeps what the new scope re-acquired and closes the rest", async () => {
  const closed: string[] = [];
  const resources = new Resources();
  const old = resources.scope();
  const kept = resources.acquire("kept", () => tracked("kept", closed));
  resources.acquire("dropped", () => tracked("dropped", closed));
  const next = resources.scope();
  assert.equal(resources.acquire("kept", () => tracked("kept-2", closed)), kept);
  resources.acquire("new", () => tracked("new", closed));
  await old.release();
  assert.deepEqual(closed, ["dropped"]);
  assert.ok(resources.has("kept") && resources.has("new"));
  await old.release(); // idempotent
  assert.deepEqual(closed, ["dropped"]);
  await next.release();
  assert.deepEqual(closed.sort(), ["dropped", "kept", "new"]);
});

Deno.test("Resources: a failed reload releases its scope; the old one becomes current again", async () => {
  const closed: string[] = [];
  const resources = new Resources();
  const live = resources.scope();
  resources.acquire("shared", () => tracked("shared", closed));
  const failed = resources.scope();
  resources.acquire("shared", () => tracked("x", closed));
  resources.acquire("only-new", () => tracked("only-new", closed));
  await failed.release();
  assert.deepEqual(closed, ["only-new"]);
  // Acquires record into the live scope again.
  resources.acquire("later", () => tracked("later", closed));
  await live.release();
  assert.deepEqual(closed.sort(), ["later", "only-new", "shared"]);
});

Deno.test("Resources: objects close newest first; errors are reported, not thrown", async () => {
  const closed: string[] = [];
  const errors: string[] = [];
  const resources = new Resources((key, err) => errors.push(`${key}: ${(err as Error).message}`));
  const scope = resources.scope();
  resources.acquire("client", () => tracked("client", closed));
  resources.acquire("broken", () => ({
    close: () => Promise.reject(new Error("boom")),
  }));
  resources.acquire("mirror", () => ({
    close: async () => {
      await Promise.resolve();
      closed.push("mirror");
    },
  }));
  await scope.release();
  assert.deepEqual(closed, ["mirror", "client"]);
  assert.deepEqual(errors, ["broken: boom"]);
});

Deno.test("Resources: acquire outside a scope throws; closeAll closes everything", async () => {
  const closed: string[] = [];
  const resources = new Resources();
  assert.throws(() => resources.acquire("a", () => tracked("a", closed)), /outside a scope/);
  resources.scope();
  resources.acquire("a", () => tracked("a", closed));
  resources.scope();
  resources.acquire("b", () => tracked("b", closed));
  await resources.closeAll();
  assert.deepEqual(closed.sort(), ["a", "b"]);
  assert.equal(resources.size, 0);
});
