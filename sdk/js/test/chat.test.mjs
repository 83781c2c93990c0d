// ChatClient and ServerClient against a real server (see harness.mjs).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { test } from "node:test";
import WebSocket from "ws";
import { CariosanError, ChatClient, ServerClient, verifyWebhook } from "../dist/index.js";
import { testServer, unique } from "./harness.mjs";

const { url, apiSecret } = await testServer();
const server = new ServerClient({ baseUrl: url, apiSecret });

async function userClient(userId, extra = {}) {
  await server.upsertUser(userId, { name: userId.toUpperCase() });
  return new ChatClient({ baseUrl: url, tokenProvider: async () => (await server.createToken(userId)).token, WebSocket, ...extra });
}

function nextEvent(stream, type, where = () => true) {
  return new Promise((resolve) => {
    const handler = (event) => {
      if (where(event)) {
        stream.off(type, handler);
        resolve(event);
      }
    };
    stream.on(type, handler);
  });
}

test("channels, messages, threads, reactions, read state, search and events", async () => {
  const alice = unique("alice");
  const bob = unique("bob");
  const chat = await userClient(alice);
  await server.upsertUser(bob);
  const me = await chat.me();
  assert.equal(me.user.id, alice);

  const channel = await chat.createChannel({ type: "group", members: [alice, bob], name: "Plans", data: { topic: "x" } });
  assert.equal(channel.type, "group");
  assert.deepEqual(channel.data, { topic: "x" });
  assert.deepEqual(new Set((await chat.getChannel(channel.id)).members.map((m) => m.user_id)), new Set([alice, bob]));
  const { latest_seq: before } = await chat.events();

  const first = await chat.send(channel.id, { text: "first" });
  const again = await chat.send(channel.id, { text: "first", id: first.id });
  assert.equal(again.id, first.id, "the same id is the same message");
  const second = await chat.send(channel.id, { text: `hi @${bob}`, mentions: [bob], data: { n: 2 } });
  assert.deepEqual(second.mentions, [bob]);
  const reply = await chat.send(channel.id, { text: "in the thread", parentId: first.id });
  assert.equal(reply.parent_id, first.id);

  const page = await chat.listMessages(channel.id, { limit: 10 });
  assert.deepEqual(page.messages.map((m) => m.id), [first.id, second.id], "replies stay in their thread");
  assert.deepEqual((await chat.listMessages(channel.id, { before: second.id })).messages.map((m) => m.id), [first.id]);
  assert.deepEqual((await chat.listMessages(channel.id, { after: first.id })).messages.map((m) => m.id), [second.id]);
  assert.deepEqual((await chat.replies(first.id)).messages.map((m) => m.text), ["in the thread"]);

  const edited = await chat.editMessage(second.id, "edited");
  assert.equal(edited.text, "edited");
  assert.ok(edited.edited_at);
  const reacted = await chat.addReaction(first.id, "like");
  assert.deepEqual(reacted.reactions, { like: 1 });
  assert.deepEqual(reacted.own_reactions, ["like"]);
  assert.deepEqual((await chat.removeReaction(first.id, "like")).reactions, {});
  await chat.deleteMessage(second.id);
  assert.ok((await chat.listMessages(channel.id)).messages.find((m) => m.id === second.id).deleted_at);

  const bobChat = server.asUser(bob);
  const bobChannel = (await bobChat.listChannels()).channels.find((c) => c.id === channel.id);
  assert.equal(bobChannel.unread_count, 1);
  assert.equal(await bobChat.markRead(channel.id), 0);
  await chat.typing(channel.id, "start");

  const found = await chat.search("first", { channelId: channel.id });
  assert.deepEqual(found.map((m) => m.id), [first.id]);

  // The log shows an event once no earlier write can still land before it: read on until the
  // last ones are there.
  const types = [];
  let after = before;
  for (let i = 0; i < 100 && !types.includes("message.deleted"); i++) {
    const page = await chat.events({ afterSeq: after });
    for (const event of page.events) {
      assert.ok(event.seq > after, "in order, each once");
      after = event.seq;
      types.push(event.type);
    }
    if (!types.includes("message.deleted")) await new Promise((r) => setTimeout(r, 100));
  }
  for (const type of ["message.new", "message.updated", "reaction.new", "reaction.deleted", "message.deleted"]) {
    assert.ok(types.includes(type), `${type} in ${types.join()}`);
  }
});

test("send retries with the same id: a lost answer never makes a duplicate", async () => {
  const alice = unique("alice");
  let dropped = 0;
  // The request reaches the server, but the answer is lost once (as when a connection drops).
  const flaky = async (input, init) => {
    const response = await fetch(input, init);
    if (init?.method === "POST" && String(input).endsWith("/messages") && dropped === 0) {
      dropped += 1;
      throw new TypeError("fetch failed");
    }
    return response;
  };
  const chat = await userClient(alice, { fetch: flaky });
  const channel = await chat.createChannel({ type: "group", members: [alice] });
  const sent = await chat.send(channel.id, { text: "exactly once" });
  assert.equal(dropped, 1);
  const messages = (await chat.listMessages(channel.id)).messages;
  assert.deepEqual(messages.map((m) => m.id), [sent.id]);
});

test("errors carry the API's code, status and request id", async () => {
  const chat = await userClient(unique("alice"));
  await assert.rejects(chat.getChannel("nope"), (error) => {
    assert.ok(error instanceof CariosanError);
    assert.equal(error.code, "NOT_FOUND");
    assert.equal(error.status, 404);
    assert.match(error.requestId, /\S/);
    return true;
  });
  await assert.rejects(chat.send("nope", { text: "" }), (error) => error instanceof CariosanError && error.status >= 400);
});

test("tokenProvider is asked again once on UNAUTHORIZED; a second refusal surfaces", async () => {
  const alice = unique("alice");
  await server.upsertUser(alice);
  const good = (await server.createToken(alice)).token;
  let calls = 0;
  const recovering = new ChatClient({ baseUrl: url, token: "expired.token.value", tokenProvider: () => { calls += 1; return good; } });
  assert.equal((await recovering.me()).user.id, alice);
  assert.equal(calls, 1);

  let refused = 0;
  const hopeless = new ChatClient({ baseUrl: url, tokenProvider: () => { refused += 1; return "still.not.valid"; } });
  await assert.rejects(hopeless.me(), (error) => error instanceof CariosanError && error.code === "UNAUTHORIZED" && error.status === 401);
  assert.equal(refused, 2, "the first token, then one refresh");

  const noProvider = new ChatClient({ baseUrl: url, token: "bad" });
  await assert.rejects(noProvider.me(), (error) => error.code === "UNAUTHORIZED");
});

test("upload asks for the URL, PUTs the bytes with progress, and the file comes back", async () => {
  const alice = unique("alice");
  const chat = await userClient(alice);
  const channel = await chat.createChannel({ type: "group", members: [alice] });
  const bytes = new TextEncoder().encode("hello attachment ".repeat(1000));
  const progress = [];
  const uploaded = await chat.upload(channel.id, new Blob([bytes]), {
    filename: "notes.txt",
    contentType: "text/plain",
    onProgress: (p) => progress.push(p),
  });
  assert.deepEqual(progress.at(-1), { loaded: bytes.length, total: bytes.length });
  const message = await chat.send(channel.id, { text: "see file", attachmentIds: [uploaded.id] });
  assert.deepEqual(message.attachments.map((a) => [a.id, a.filename, a.size]), [[uploaded.id, "notes.txt", bytes.length]]);
  const download = await chat.getAttachment(uploaded.id);
  assert.equal(download.filename, "notes.txt");
  const body = new Uint8Array(await (await fetch(download.url)).arrayBuffer());
  assert.deepEqual(body, bytes);
});

test("connect() delivers live events, typing included, and close() ends it", async () => {
  const alice = unique("alice");
  const bob = unique("bob");
  const chat = await userClient(alice);
  const bobChat = await userClient(bob);
  const channel = await chat.createChannel({ type: "group", members: [alice, bob] });
  const stream = chat.connect();
  const states = [];
  stream.on("connection.changed", (event) => states.push(event.state));
  await stream.ready();
  const typing = nextEvent(stream, "typing.start", (e) => e.channel_id === channel.id);
  await bobChat.typing(channel.id, "start");
  assert.equal((await typing).user_id, bob);
  const arrived = nextEvent(stream, "message.new", (e) => e.channel_id === channel.id);
  const sent = await bobChat.send(channel.id, { text: "live" });
  const event = await arrived;
  assert.equal(event.message.id, sent.id);
  assert.equal(stream.lastSeq, event.seq);
  stream.close();
  assert.deepEqual(states, ["connected", "closed"]);
  assert.equal(stream.state, "closed");
});

test("connect({ afterSeq }) replays what was missed, in order, once", async () => {
  const alice = unique("alice");
  const chat = await userClient(alice);
  const channel = await chat.createChannel({ type: "group", members: [alice] });
  const { latest_seq } = await chat.events();
  const texts = ["one", "two", "three"];
  for (const text of texts) await chat.send(channel.id, { text });
  const stream = chat.connect({ afterSeq: latest_seq });
  const seen = [];
  const done = new Promise((resolve) =>
    stream.on("message.new", (event) => {
      seen.push(event.message.text);
      if (seen.length === texts.length) resolve();
    }),
  );
  await done;
  stream.close();
  assert.deepEqual(seen, texts);
});

test("a refused WebSocket token is refreshed once; refused again, the stream ends UNAUTHORIZED", async () => {
  const alice = unique("alice");
  await server.upsertUser(alice);
  let calls = 0;
  const chat = new ChatClient({
    baseUrl: url,
    token: "not.a.token",
    WebSocket,
    tokenProvider: async () => {
      calls += 1;
      return (await server.createToken(alice)).token;
    },
  });
  const stream = chat.connect();
  await stream.ready();
  assert.equal(calls, 1);
  stream.close();

  const hopeless = new ChatClient({ baseUrl: url, token: "bad", WebSocket, tokenProvider: () => "still.bad" });
  const failed = hopeless.connect();
  const error = await new Promise((resolve) => failed.onError(resolve));
  assert.equal(error.code, "UNAUTHORIZED");
  assert.equal(failed.state, "closed");
});

test("ServerClient: users, tokens, webhooks, and verifyWebhook on a real delivery", async () => {
  const alice = unique("alice");
  const user = await server.upsertUser(alice, { name: "Alice", data: { plan: "pro" } });
  assert.equal(user.name, "Alice");
  assert.deepEqual((await server.getUser(alice)).data, { plan: "pro" });
  const token = await server.createToken(alice, { ttlSeconds: 60 });
  assert.ok(Date.parse(token.expires_at) > Date.now());

  const received = [];
  let arrived;
  const delivered = new Promise((resolve) => (arrived = resolve));
  const receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
      arrived();
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  try {
    const hook = await server.createWebhook({ url: `http://127.0.0.1:${receiver.address().port}/hook`, events: ["message.new"] });
    assert.match(hook.secret, /^whsec_/);
    assert.ok((await server.listWebhooks()).some((w) => w.id === hook.id && w.secret === undefined));
    const chat = await userClient(alice);
    const channel = await chat.createChannel({ type: "group", members: [alice] });
    const sent = await chat.send(channel.id, { text: "to the backend" });
    await delivered;
    const { headers, body } = received[0];
    const event = await verifyWebhook(body, headers, hook.secret);
    assert.equal(event.type, "message.new");
    assert.equal(event.message.id, sent.id);
    await assert.rejects(verifyWebhook(body.toString() + " ", headers, hook.secret), (e) => e.code === "UNAUTHORIZED");
    await assert.rejects(verifyWebhook(body, headers, "whsec_" + Buffer.alloc(32).toString("base64")), (e) => e.code === "UNAUTHORIZED");
    const deliveries = await server.listDeliveries(hook.id);
    assert.ok(deliveries.deliveries.length >= 1);
    await server.deleteWebhook(hook.id);
    assert.ok(!(await server.listWebhooks()).some((w) => w.id === hook.id));
  } finally {
    receiver.close();
  }
});

test("verifyWebhook checks the timestamp window", async () => {
  const secret = "whsec_" + Buffer.from("k".repeat(32)).toString("base64");
  const body = JSON.stringify({ type: "message.new", seq: 1 });
  const sign = (id, ts) => "v1," + createHmac("sha256", Buffer.from("k".repeat(32))).update(`${id}.${ts}.${body}`).digest("base64");
  const now = Math.floor(Date.now() / 1000);
  const fresh = { "webhook-id": "msg_1", "webhook-timestamp": String(now), "webhook-signature": `v1,bogus ${sign("msg_1", now)}` };
  assert.equal((await verifyWebhook(body, new Headers(fresh), secret)).seq, 1);
  const old = { ...fresh, "webhook-timestamp": String(now - 3600), "webhook-signature": sign("msg_1", now - 3600) };
  await assert.rejects(verifyWebhook(body, old, secret), (e) => e.code === "UNAUTHORIZED");
});

// Flags and the review queue (issue 14 point 4).
test("flags: members report, moderators review and resolve, and only they get the events", async () => {
  const owner = unique("owner");
  const reporter = unique("reporter");
  const mod = unique("mod");
  const ownerChat = await userClient(owner);
  const reporterChat = await userClient(reporter);
  await server.upsertUser(mod, { role: "moderator" });
  const modChat = new ChatClient({ baseUrl: url, tokenProvider: async () => (await server.createToken(mod)).token, WebSocket });
  const channel = await ownerChat.createChannel({ type: "group", members: [owner, reporter] });
  const message = await ownerChat.send(channel.id, { text: "buy now" });

  const flag = await reporterChat.flagMessage(message.id, { reason: "spam" });
  assert.equal(flag.status, "open");
  assert.equal(flag.message.id, message.id);
  assert.equal(flag.reporter_id, reporter);
  assert.equal((await reporterChat.flagMessage(message.id)).id, flag.id, "one open flag per reporter");
  const userFlag = await reporterChat.flagUser(owner, { reason: "rude" });
  assert.equal(userFlag.message, null);
  await assert.rejects(reporterChat.listFlags(), (e) => e instanceof CariosanError && e.code === "FORBIDDEN");

  const seen = [];
  for await (const f of modChat.iterFlags({ pageSize: 1 })) seen.push(f.id);
  assert.deepEqual(seen.filter((id) => id === flag.id || id === userFlag.id), [userFlag.id, flag.id]);
  const listed = (await server.listFlags({ limit: 50 })).flags.find((f) => f.id === flag.id);
  assert.deepEqual(listed.context.map((m) => m.id), [message.id]);

  const deleted = await modChat.resolveFlag(flag.id, "delete_message", { reason: "spam" });
  assert.equal(deleted.resolution, "delete_message");
  assert.ok(deleted.message.deleted_at);
  const dismissed = await server.resolveFlag(userFlag.id, "dismiss");
  assert.equal(dismissed.status, "resolved");
  const resolvedIds = [];
  for await (const f of server.iterFlags({ status: "resolved" })) resolvedIds.push(f.id);
  assert.ok(resolvedIds.includes(flag.id) && resolvedIds.includes(userFlag.id));

  const modEvents = (await modChat.events({ afterSeq: 0, limit: 1000 })).events;
  const flagged = modEvents.filter((e) => e.type === "message.flagged").map((e) => e.flag.id);
  assert.ok(flagged.includes(flag.id) && flagged.includes(userFlag.id));
  const reporterEvents = (await reporterChat.events({ afterSeq: 0, limit: 1000 })).events;
  assert.ok(!reporterEvents.some((e) => e.type === "message.flagged" || e.type === "flag.resolved"));
});

// Mutes and blocks (issue 14.3).
test("mutes and blocks: muteChannel, muteUser, blockUser and their undoing", async () => {
  const alice = unique("alice");
  const bob = unique("bob");
  const chatA = await userClient(alice);
  const chatB = await userClient(bob);
  const channel = await chatA.createChannel({ type: "group", members: [bob] });
  await chatA.send(channel.id, { text: "hello" });
  assert.equal((await chatB.me()).total_unread, 1);

  await chatB.muteChannel(channel.id, { expiresAt: new Date(Date.now() + 3_600_000) });
  assert.equal((await chatB.me()).total_unread, 0);
  assert.equal((await chatB.getChannel(channel.id)).muted, true);
  assert.equal((await chatA.getChannel(channel.id)).muted, false);
  await chatB.unmuteChannel(channel.id);
  assert.equal((await chatB.me()).total_unread, 1);

  await chatB.muteUser(alice);
  assert.deepEqual((await chatB.listMessages(channel.id)).messages.map((m) => m.muted), [true]);
  assert.deepEqual((await chatA.listMessages(channel.id)).messages.map((m) => m.muted), [false]);
  await chatB.unmuteUser(alice);
  assert.deepEqual((await chatB.listMessages(channel.id)).messages.map((m) => m.muted), [false]);

  await chatB.blockUser(alice);
  assert.deepEqual((await chatB.listBlocks()).blocks.map((b) => b.user_id), [alice]);
  await assert.rejects(chatA.createChannel({ type: "dm", members: [bob] }), (error) => error.code === "FORBIDDEN");
  await assert.rejects(chatB.muteUser(bob), (error) => error.code === "VALIDATION_FAILED");
  await chatB.unblockUser(alice);
  assert.equal((await chatA.createChannel({ type: "dm", members: [bob] })).type, "dm");
});
