// Roles and the audit log through both clients, against a real server (see harness.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { CariosanError, ChatClient, ServerClient } from "../dist/index.js";
import { testServer, unique } from "./harness.mjs";

const { url, apiSecret } = await testServer();
const server = new ServerClient({ baseUrl: url, apiSecret });

async function userClient(userId, role = "user") {
  await server.upsertUser(userId, { name: userId, role });
  return new ChatClient({ baseUrl: url, tokenProvider: async () => (await server.createToken(userId)).token, WebSocket });
}

test("setMemberRole changes a role, refuses plain members, and the audit log records it", async () => {
  const owner = await userClient(unique("owner"));
  const memberId = unique("member");
  const member = await userClient(memberId);
  const channel = await owner.createChannel({ type: "group", members: [memberId] });
  const promoted = await owner.setMemberRole(channel.id, memberId, "moderator");
  assert.equal(promoted.role, "moderator");
  assert.equal(promoted.user_id, memberId);
  await owner.setMemberRole(channel.id, memberId, "member");
  await assert.rejects(member.setMemberRole(channel.id, memberId, "moderator"), (e) => e instanceof CariosanError && e.code === "FORBIDDEN");
  const page = await server.listAudit({ action: "member.role_changed", limit: 2 });
  assert.deepEqual(
    page.entries.map((e) => [e.target, e.data.to]),
    [[`user:${memberId}`, "member"], [`user:${memberId}`, "moderator"]],
  );
  assert.ok(page.next_cursor === null || typeof page.next_cursor === "string");
  await assert.rejects(server.listAudit({ cursor: "nope" }), (e) => e.code === "VALIDATION_FAILED");
});
