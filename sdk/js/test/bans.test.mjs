// Bans (issue 14, point 2) against a real server (see harness.mjs): banUser, listBans,
// unbanUser, and the BANNED error and the 4003 close a banned user gets.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { ChatClient, ServerClient } from "../dist/index.js";
import { testServer, unique } from "./harness.mjs";

const { url, apiSecret } = await testServer();
const server = new ServerClient({ baseUrl: url, apiSecret });

test("a banned user gets BANNED naming the reason; listBans and unbanUser", async () => {
  const alice = unique("alice");
  const bob = unique("bob");
  const mod = unique("mod");
  await server.upsertUser(alice);
  await server.upsertUser(bob);
  await server.upsertUser(mod, { role: "moderator" });
  const chat = new ChatClient({ baseUrl: url, token: (await server.createToken(alice)).token, WebSocket });
  const channel = await chat.createChannel({ type: "group", members: [bob] });

  const moderator = new ChatClient({ baseUrl: url, token: (await server.createToken(mod)).token });
  const expiresAt = new Date(Date.now() + 3600_000);
  const ban = await moderator.banUser(alice, { reason: "js spam", expiresAt });
  assert.equal(ban.user_id, alice);
  assert.equal(ban.channel_id, null);
  assert.equal(ban.created_by, mod);
  await assert.rejects(
    chat.send(channel.id, { text: "hi" }),
    (error) => error.code === "BANNED" && error.status === 403 && error.message.includes("js spam"),
  );
  const page = await server.listBans({ limit: 100 });
  assert.ok(page.bans.some((b) => b.user_id === alice && b.reason === "js spam"));

  const stream = chat.connect();
  const failed = new Promise((resolve) => stream.onError(resolve));
  const error = await failed;
  assert.equal(error.code, "BANNED");
  stream.close();

  await server.unbanUser(alice);
  await chat.send(channel.id, { text: "back" });
  await assert.rejects(server.unbanUser(alice), (e) => e.code === "NOT_FOUND");
});
