// Message ids are UUIDv7: version 7, the time in front, later ids sorting after earlier ones.
import assert from "node:assert/strict";
import { test } from "node:test";
import { newMessageId } from "../dist/index.js";

test("newMessageId makes time-ordered UUIDv7 ids", async () => {
  const before = Date.now();
  const first = Array.from({ length: 500 }, () => newMessageId());
  const after = Date.now();
  for (const id of first) {
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ms = parseInt(id.replace(/-/g, "").slice(0, 12), 16);
    assert.ok(before <= ms && ms <= after, `${id}: ${ms} outside ${before}..${after}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 3));
  const second = Array.from({ length: 500 }, () => newMessageId());
  const sorted = (ids) => [...ids].sort();
  assert.ok(sorted(first).at(-1) < sorted(second)[0]);
  assert.equal(new Set([...first, ...second]).size, 1000);
});
