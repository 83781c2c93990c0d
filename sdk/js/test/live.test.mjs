// LiveStream's reconnect, resume, dedup, resync and token rules, with a scripted fake socket.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BACKOFF, ChatClient } from "../dist/index.js";

BACKOFF.firstMs = 1;
BACKOFF.maxMs = 4;
BACKOFF.rateLimitedMs = 2;

/** A WebSocket class whose instances the test drives; `sockets` lists every one made. */
function fakeWebSocket() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
      for (const waiter of FakeSocket.waiters.splice(0)) waiter(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code = 1000) {
      this.readyState = 3;
      this.closedWith = code;
    }
    // test side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    frame(value) {
      this.onmessage?.({ data: JSON.stringify(value) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
  }
  FakeSocket.waiters = [];
  const next = (count) =>
    sockets.length >= count ? Promise.resolve(sockets[count - 1]) : new Promise((resolve) => FakeSocket.waiters.push(function wait(s) {
      if (sockets.length >= count) resolve(sockets[count - 1]);
      else FakeSocket.waiters.push(wait);
    }));
  return { FakeSocket, sockets, next };
}

const msg = (seq, text) => ({ type: "message.new", seq, channel_id: "c", message: { id: `m${seq}`, text } });

test("resumes after the last seq emitted, skips repeats, and reports its state", async () => {
  const { FakeSocket, next } = fakeWebSocket();
  const chat = new ChatClient({ baseUrl: "http://chat.test", token: "t1", WebSocket: FakeSocket });
  const stream = chat.connect();
  const seen = [];
  const states = [];
  stream.on("message.new", (e) => seen.push(e.seq));
  stream.on("connection.changed", (e) => states.push(e.state));

  const first = await next(1);
  assert.equal(first.url, "ws://chat.test/v1/ws?token=t1");
  first.open();
  first.frame({ type: "connection.ready", user_id: "alice", latest_seq: 10 });
  assert.deepEqual(first.sent, [{ type: "resume", after_seq: 10 }]);
  first.frame(msg(11, "a"));
  first.frame(msg(12, "b"));
  first.drop(1001);
  assert.equal(stream.state, "reconnecting");

  const second = await next(2);
  second.open();
  second.frame({ type: "connection.ready", user_id: "alice", latest_seq: 14 });
  assert.deepEqual(second.sent, [{ type: "resume", after_seq: 12 }]);
  second.frame(msg(12, "b"));      // replayed at the seam: already emitted
  second.frame(msg(13, "c"));
  second.frame({ type: "typing.start", channel_id: "c", user_id: "bob" });
  second.frame(msg(14, "d"));
  assert.deepEqual(seen, [11, 12, 13, 14]);
  assert.equal(stream.lastSeq, 14);
  assert.equal(stream.reconnects, 1);
  stream.close();
  assert.deepEqual(states, ["connected", "reconnecting", "connected", "closed"]);
  assert.equal(second.closedWith, 1000);
});

test("connect({ afterSeq }) resumes from it; resync.required is emitted and the stream goes on from latest_seq", async () => {
  const { FakeSocket, next } = fakeWebSocket();
  const chat = new ChatClient({ baseUrl: "https://chat.test", token: "t", WebSocket: FakeSocket });
  const stream = chat.connect({ afterSeq: 3 });
  const resyncs = [];
  const seen = [];
  stream.on("resync.required", (e) => resyncs.push(e.latest_seq));
  stream.on("message.new", (e) => seen.push(e.seq));
  const socket = await next(1);
  assert.ok(socket.url.startsWith("wss://chat.test/v1/ws?"));
  socket.open();
  socket.frame({ type: "connection.ready", user_id: "alice", latest_seq: 900 });
  assert.deepEqual(socket.sent, [{ type: "resume", after_seq: 3 }]);
  socket.frame({ type: "resync.required", latest_seq: 900 });
  assert.deepEqual(resyncs, [900]);
  assert.equal(stream.lastSeq, 900);
  socket.frame(msg(901, "after the resync"));
  socket.drop(1006);
  const again = await next(2);
  again.open();
  again.frame({ type: "connection.ready", user_id: "alice", latest_seq: 901 });
  assert.deepEqual(again.sent, [{ type: "resume", after_seq: 901 }]);
  assert.deepEqual(seen, [901]);
  stream.close();
});

test("close 4001: one new token from the provider; refused again, the stream fails UNAUTHORIZED", async () => {
  const { FakeSocket, next } = fakeWebSocket();
  let calls = 0;
  const chat = new ChatClient({ baseUrl: "http://chat.test", token: "old", WebSocket: FakeSocket, tokenProvider: () => `new${++calls}` });
  const stream = chat.connect();
  const errors = [];
  stream.onError((e) => errors.push(e));
  const first = await next(1);
  first.open();
  first.frame({ type: "connection.ready", user_id: "a", latest_seq: 1 });
  first.drop(4001); // expired while connected
  const second = await next(2);
  assert.equal(second.url, "ws://chat.test/v1/ws?token=new1");
  second.open();
  second.frame({ type: "connection.ready", user_id: "a", latest_seq: 1 });
  second.drop(4001);
  const third = await next(3);
  assert.equal(third.url, "ws://chat.test/v1/ws?token=new2");
  third.open();
  third.drop(4001); // refused right after a refresh: give up
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 2);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "UNAUTHORIZED");
  assert.equal(stream.state, "closed");
});

test("without a tokenProvider a 4001 surfaces at once; a handler's exception does not stop the stream", async () => {
  const { FakeSocket, next } = fakeWebSocket();
  const chat = new ChatClient({ baseUrl: "http://chat.test", token: "t", WebSocket: FakeSocket });
  const stream = chat.connect();
  const seen = [];
  const uncaught = [];
  const consoleError = console.error;
  console.error = (...args) => uncaught.push(args);
  stream.on("message.new", () => { throw new Error("app bug"); });
  stream.on("message.new", (e) => seen.push(e.seq));
  const errors = [];
  stream.onError((e) => errors.push(e.code));
  const socket = await next(1);
  socket.open();
  socket.frame({ type: "connection.ready", user_id: "a", latest_seq: 0 });
  socket.frame(msg(1, "x"));
  await new Promise((r) => setTimeout(r, 5));
  console.error = consoleError;
  assert.deepEqual(seen, [1]);
  assert.equal(uncaught.length, 1);
  socket.drop(4001);
  assert.deepEqual(errors, ["UNAUTHORIZED"]);
});

test("rate limited (4008): backs off and resumes", async () => {
  const { FakeSocket, next } = fakeWebSocket();
  const chat = new ChatClient({ baseUrl: "http://chat.test", token: "t", WebSocket: FakeSocket });
  BACKOFF.maxMs = 4;
  const stream = chat.connect({ afterSeq: 5 });
  const socket = await next(1);
  socket.open();
  socket.frame({ type: "connection.ready", user_id: "a", latest_seq: 5 });
  socket.drop(4008);
  const again = await next(2);
  again.open();
  again.frame({ type: "connection.ready", user_id: "a", latest_seq: 5 });
  assert.deepEqual(again.sent, [{ type: "resume", after_seq: 5 }]);
  stream.close();
});
