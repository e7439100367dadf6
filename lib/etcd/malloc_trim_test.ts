import assert from "node:assert/strict";
import { MallocTrimmer, openMallocTrim } from "./malloc_trim.ts";

const MB = 1024 * 1024;

/** A trimmer over a scripted RSS: `trim` gives back what `freeable` says. */
function scripted(slackMb = 8) {
  const state = { rss: 80 * MB, freeable: 0, trims: 0 };
  const trimmer = new MallocTrimmer({
    rss: () => state.rss,
    trim: () => {
      state.trims++;
      state.rss -= state.freeable;
      state.freeable = 0;
    },
    slackBytes: slackMb * MB,
  });
  return { state, trimmer };
}

Deno.test("MallocTrimmer: trims once the RSS is well above the lowest seen, not before", () => {
  const { state, trimmer } = scripted();
  trimmer.tick(); // floor 80 MB
  state.rss = 86 * MB;
  trimmer.tick();
  assert.equal(state.trims, 0, "6 MB above the floor is within the slack");
  state.rss = 112 * MB;
  state.freeable = 25 * MB;
  trimmer.tick();
  assert.equal(state.trims, 1);
  assert.equal(state.rss, 87 * MB);
  trimmer.tick();
  assert.equal(state.trims, 1, "back within the slack: nothing to do");
});

Deno.test("MallocTrimmer: backs off while trims give nothing back (the memory is in use)", () => {
  const { state, trimmer } = scripted();
  trimmer.tick();
  state.rss = 200 * MB; // a big copy of etcd, all of it live
  const trimsAt: number[] = [];
  for (let tick = 1; tick <= 40; tick++) {
    const before = state.trims;
    trimmer.tick();
    if (state.trims > before) trimsAt.push(tick);
  }
  // Skips 1, 2, 4, then 5 ticks between fruitless trims: 8 trims in 40 ticks, not 40.
  assert.deepEqual(trimsAt, [1, 3, 6, 11, 17, 23, 29, 35]);
  // The copy is deleted: the GC gives its heap back (the RSS falls) and the
  // allocator keeps 25 MB of freed buffers. The fall ends the backoff at once.
  state.rss = 112 * MB;
  state.freeable = 25 * MB;
  const before = state.trims;
  trimmer.tick();
  assert.equal(state.trims, before + 1);
  assert.equal(state.rss, 87 * MB);
});

Deno.test("MallocTrimmer: after a fall the backoff starts over, so memory freed just after it is trimmed soon", () => {
  const { state, trimmer } = scripted();
  trimmer.tick();
  state.rss = 200 * MB;
  for (let tick = 0; tick < 40; tick++) trimmer.tick(); // backed off to the longest
  // A GC: the heap is unmapped (the RSS falls) but the native buffers it held
  // are freed to the allocator only a little later.
  state.rss = 120 * MB;
  let before = state.trims;
  trimmer.tick();
  assert.equal(state.trims, before + 1, "the fall itself is worth a trim");
  for (let tick = 0; tick < 3; tick++) trimmer.tick(); // still nothing freed
  state.freeable = 25 * MB;
  trimmer.tick();
  assert.equal(state.rss, 95 * MB, "memory freed four ticks after the fall is trimmed at once");
  // Then the backoff is back for memory that stays in use.
  state.rss = 130 * MB;
  before = state.trims;
  for (let tick = 0; tick < 20; tick++) trimmer.tick();
  assert.ok(state.trims - before <= 8, `${state.trims - before} trims in 20 ticks`);
});

Deno.test({
  name: "openMallocTrim: glibc's malloc_trim runs through FFI on Linux",
  ignore: Deno.build.os !== "linux",
  fn() {
    const trim = openMallocTrim();
    assert.ok(trim, "malloc_trim not found at the known libc paths");
    trim();
  },
});
