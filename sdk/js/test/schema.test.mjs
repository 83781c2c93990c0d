// The SDK's types name exactly the fields of the server's /openapi.json components.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PENDING_FIELDS, SCHEMA_COMPONENTS } from "../dist/index.js";
import { testServer } from "./harness.mjs";

test("every model's fields match its /openapi.json component", async () => {
  const { url } = await testServer();
  const schema = await (await fetch(`${url}/openapi.json`)).json();
  const components = schema.components.schemas;
  for (const [name, fields] of Object.entries(SCHEMA_COMPONENTS)) {
    assert.ok(components[name], `/openapi.json has no component ${name}`);
    const published = new Set(Object.keys(components[name].properties ?? {}));
    const pending = new Set(PENDING_FIELDS[name] ?? []);
    const ours = new Set(fields);
    const missing = [...published].filter((f) => !ours.has(f));
    const unknown = [...ours].filter((f) => !published.has(f) && !pending.has(f));
    assert.deepEqual(missing, [], `${name}: the server publishes fields the SDK's type lacks`);
    assert.deepEqual(unknown, [], `${name}: the SDK's type has fields the server does not publish`);
  }
});
