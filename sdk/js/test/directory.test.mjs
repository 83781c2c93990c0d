// The user directory and the export (issue 14, points 6 and 7) against a real server (see
// harness.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChatClient, ServerClient } from "../dist/index.js";
import { testServer, unique } from "./harness.mjs";

const { url, apiSecret } = await testServer();
const server = new ServerClient({ baseUrl: url, apiSecret });

test("listUsers, searchUsers, iterUsers: the backend sees all, a user those it shares a channel with", async () => {
  const prefix = unique("dir").toLowerCase();
  const [ann, bob, cy] = ["ann", "bob", "cy"].map((n) => `${prefix}-${n}`);
  for (const id of [ann, bob, cy]) await server.upsertUser(id, { name: `Name ${id}` });
  const chat = new ChatClient({ baseUrl: url, token: (await server.createToken(ann)).token });
  await chat.createChannel({ type: "group", members: [bob] });

  const all = await server.listUsers({ q: prefix.toUpperCase(), limit: 10 });
  assert.deepEqual(all.users.map((u) => u.id), [ann, bob, cy]);
  assert.equal(all.next_cursor, null);
  const walked = [];
  for await (const user of server.iterUsers({ q: prefix, pageSize: 1 })) walked.push(user.id);
  assert.deepEqual(walked, [ann, bob, cy]);
  assert.deepEqual((await server.searchUsers(`name ${prefix}-b`)).users.map((u) => u.id), [bob]);

  const mine = [];
  for await (const user of chat.iterUsers({ q: prefix, pageSize: 1 })) mine.push(user.id);
  assert.deepEqual(mine, [ann, bob]);
  assert.deepEqual((await chat.searchUsers(cy)).users, []);
});

test("exportUser: the user's messages, memberships and read state in one document", async () => {
  const alice = unique("exp");
  await server.upsertUser(alice, { name: "Alice" });
  const chat = new ChatClient({ baseUrl: url, token: (await server.createToken(alice)).token });
  const channel = await chat.createChannel({ type: "group", members: [alice] });
  await chat.send(channel.id, { text: "hello export" });
  const exported = await server.exportUser(alice);
  assert.equal(exported.user.id, alice);
  assert.deepEqual(exported.memberships.map((m) => m.channel_id), [channel.id]);
  assert.deepEqual(exported.messages.map((m) => m.text), ["hello export"]);
  assert.deepEqual(exported.attachments, []);
  await assert.rejects(server.exportUser(unique("nobody")), (error) => error.code === "NOT_FOUND");
});
