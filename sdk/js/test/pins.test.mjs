// Pins, slow mode and freeze (issue 14 point 5) through ChatClient against a real server.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CariosanError, ChatClient, ServerClient } from "../dist/index.js";
import { testServer, unique } from "./harness.mjs";

const { url, apiSecret } = await testServer();
const server = new ServerClient({ baseUrl: url, apiSecret });

async function userClient(userId) {
  await server.upsertUser(userId, { name: userId });
  return new ChatClient({ baseUrl: url, tokenProvider: async () => (await server.createToken(userId)).token });
}

async function refused(promise, code) {
  await assert.rejects(promise, (error) => error instanceof CariosanError && error.code === code);
}

test("moderators pin and unpin, members read the pins, slow mode and freeze hold", async () => {
  const owner = await userClient(unique("owner"));
  const memberId = unique("member");
  const member = await userClient(memberId);
  const channel = await owner.createChannel({ type: "group", members: [memberId] });
  const { latest_seq: before } = await member.events();

  const first = await member.send(channel.id, { text: "first" });
  const second = await member.send(channel.id, { text: "second" });
  assert.equal(first.pinned_at, null);
  const pinned = await owner.pinMessage(first.id);
  assert.ok(pinned.pinned_at);
  await owner.pinMessage(second.id);
  assert.deepEqual((await member.listPins(channel.id)).map((m) => m.id), [second.id, first.id]);
  await refused(member.pinMessage(first.id), "FORBIDDEN");
  assert.equal((await owner.unpinMessage(second.id)).pinned_at, null);
  assert.deepEqual((await member.listPins(channel.id)).map((m) => m.id), [first.id]);

  const { events } = await member.events({ afterSeq: before });
  const types = events.filter((e) => e.type === "message.pinned" || e.type === "message.unpinned");
  assert.deepEqual(types.map((e) => e.type), ["message.pinned", "message.pinned", "message.unpinned"]);

  const slow = await owner.updateChannel(channel.id, { cooldown_seconds: 60 });
  assert.equal(slow.cooldown_seconds, 60);
  await member.send(channel.id, { text: "once" });
  await assert.rejects(member.send(channel.id, { text: "twice" }), (error) => {
    return error instanceof CariosanError && error.code === "RATE_LIMITED" && error.retryAfter > 0;
  });
  await owner.send(channel.id, { text: "moderators are exempt" });

  const frozen = await owner.updateChannel(channel.id, { cooldown_seconds: 0, frozen: true });
  assert.equal(frozen.frozen, true);
  await refused(member.send(channel.id, { text: "frozen out" }), "FORBIDDEN");
  await owner.updateChannel(channel.id, { frozen: false });
  await member.send(channel.id, { text: "thawed" });
});
