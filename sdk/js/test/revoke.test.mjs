// ServerClient.revokeTokens against a real server (see harness.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { ChatClient, ServerClient } from "../dist/index.js";
import { testServer, unique } from "./harness.mjs";

const { url, apiSecret } = await testServer();
const server = new ServerClient({ baseUrl: url, apiSecret });

test("revokeTokens: a token issued before is refused, one issued after works", async () => {
  const alice = unique("alice");
  await server.upsertUser(alice);
  const before = (await server.createToken(alice)).token;
  const chat = new ChatClient({ baseUrl: url, token: before, WebSocket });
  assert.equal((await chat.me()).user.id, alice);

  await server.revokeTokens(alice);
  await assert.rejects(chat.me(), (error) => error.code === "UNAUTHORIZED" && error.status === 401);

  const after = (await server.createToken(alice)).token;
  const renewed = new ChatClient({ baseUrl: url, token: after, WebSocket });
  assert.equal((await renewed.me()).user.id, alice);
});
