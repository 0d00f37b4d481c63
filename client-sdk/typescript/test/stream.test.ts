// The realtime stream against the real server (the `ws` package as Node 20's WebSocket):
// tweets posted through REST arrive typed; a socket the network drops (a TCP relay in
// front of the server, cut and restored) and a server restart (close 1001) are resumed
// with `since`, so that the tweets posted meanwhile arrive once each, in order; and a key
// disabled by the operator ends the stream (close 4001) instead of reconnecting.
import assert from "node:assert/strict";
import { createServer, type Server, type Socket, connect } from "node:net";
import { after, before, test } from "node:test";

import { WebSocket } from "ws";

import {
  createClient,
  type MinitterClient,
  type MinitterStream,
  StreamError,
  type StreamEvent,
  type Topic,
  unwrap,
  userTopic,
} from "../src/index.js";
import { type RunningServer, startServer } from "./support/server.js";

let server: RunningServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server.stop();
});

/** A fast backoff, so that the tests do not wait for the real one. */
const FAST = { baseMs: 50, capMs: 400 };

let users = 0;
/** A new user, as a client of `baseUrl` (the server's unless given) with `apiKey`. */
async function signUp(apiKey = server.apiKey, baseUrl = server.baseUrl): Promise<{ id: string; client: MinitterClient; token: string }> {
  users += 1;
  const username = `streamer_${users}_${crypto.randomUUID().slice(0, 6)}`;
  const body = { username, email: `${username}@example.com`, password: "correct horse battery staple" };
  const client = createClient({ baseUrl, apiKey });
  const user = await unwrap(client.api.POST("/v1/users", { body }));
  const { access_token } = await unwrap(client.api.POST("/v1/auth/token", { body: { email: body.email, password: body.password } }));
  return { id: user.id, client: client.withBearerToken(access_token), token: access_token };
}

/** Reads a stream in the background, so that a test can wait for the event it expects. */
function record(stream: MinitterStream) {
  const events: StreamEvent[] = [];
  let wake = () => {};
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const event of stream) {
        events.push(event);
        wake();
      }
    } catch (error) {
      failure = error;
    }
    wake();
  })();
  return {
    events,
    done,
    get failure() {
      return failure;
    },
    /** Waits for an event that `matches`, seen after the first `from` events. */
    async until(matches: (event: StreamEvent) => boolean, from = 0, timeoutMs = 20_000): Promise<StreamEvent> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.slice(from).find(matches);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`no such event; saw ${JSON.stringify(events.map((event) => event.type))}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
    },
    /** The ids of the tweets received on `topic`, in order. */
    tweets(topic: Topic): string[] {
      return events.flatMap((event) => (event.type === "tweet.created" && event.topic === topic ? [event.tweet.id] : []));
    },
  };
}

const subscribedTo = (topic: Topic) => (event: StreamEvent) => event.type === "subscribed" && event.topic === topic;
const tweetWithId = (id: string) => (event: StreamEvent) => event.type === "tweet.created" && event.tweet.id === id;

async function post(client: MinitterClient, text: string): Promise<string> {
  return (await unwrap(client.api.POST("/v1/tweets", { body: { text } }))).id;
}

/** A TCP relay in front of the server: `cut()` drops every connection and refuses new ones until `restore()`. */
async function relay(port: number) {
  const sockets = new Set<Socket>();
  let down = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const proxy: Server = createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = connect(port, "127.0.0.1");
    track(client);
    track(upstream);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const address = proxy.address();
  assert.ok(address !== null && typeof address === "object");
  return {
    baseUrl: `http://127.0.0.1:${address.port}`,
    cut() {
      down = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      down = false;
    },
    async close() {
      this.cut();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

test("a tweet posted through the REST API arrives typed on the stream", async () => {
  const ada = await signUp();
  const bob = await signUp();
  await unwrap(bob.client.api.PUT("/v1/me/following/{user_id}", { params: { path: { user_id: ada.id } } }));
  const stream = bob.client.stream({ topics: ["home", userTopic(ada.id)], WebSocket });
  const log = record(stream);
  await log.until(subscribedTo("home"));
  await log.until(subscribedTo(userTopic(ada.id)));
  assert.equal(stream.state, "open");

  const id = await post(ada.client, "Hello, stream!");
  const onHome = await log.until((event) => event.type === "tweet.created" && event.topic === "home");
  await log.until((event) => event.type === "tweet.created" && event.topic === userTopic(ada.id));
  assert.ok(onHome.type === "tweet.created");
  assert.equal(onHome.tweet.id, id);
  assert.equal(onHome.tweet.text, "Hello, stream!");
  assert.equal(onHome.tweet.author_id, ada.id);
  assert.equal(typeof onHome.tweet.created_at, "string");

  stream.close();
  await log.done;
  assert.equal(log.failure, undefined);
  assert.deepEqual(
    log.events.map((event) => event.type).filter((type) => type !== "subscribed"),
    ["connecting", "open", "tweet.created", "tweet.created", "closed"],
  );
});

test("a stream replays from a given since, then goes live", async () => {
  const ada = await signUp();
  const first = await post(ada.client, "one");
  const second = await post(ada.client, "two");
  const third = await post(ada.client, "three");
  const stream = ada.client.stream({ topics: [{ topic: "home", since: first }], WebSocket });
  const log = record(stream);
  const subscribed = await log.until(subscribedTo("home"));
  assert.deepEqual(subscribed, { type: "subscribed", topic: "home", replayed: 2, newest: third });
  assert.deepEqual(log.tweets("home"), [second, third]);
  stream.close();
  await log.done;
});

test("a socket the network drops is resumed: the tweets posted meanwhile arrive once each, in order", async () => {
  const ada = await signUp();
  const { port } = new URL(server.baseUrl);
  const network = await relay(Number(port));
  try {
    const through = createClient({ baseUrl: network.baseUrl, apiKey: server.apiKey, bearerToken: ada.token });
    const stream = through.stream({ topics: ["home"], WebSocket, backoff: FAST });
    const log = record(stream);
    await log.until(subscribedTo("home"));
    const before = await post(ada.client, "before the cut");
    await log.until(tweetWithId(before));

    network.cut();
    const cutAt = log.events.length;
    const reconnecting = await log.until((event) => event.type === "reconnecting", cutAt);
    assert.ok(reconnecting.type === "reconnecting");
    assert.equal(reconnecting.cause.kind, "closed");
    assert.equal(reconnecting.cause.kind === "closed" && reconnecting.cause.code, 1006);
    // While the network is down: tickets cannot be had, and the stream keeps backing off.
    await log.until((event) => event.type === "reconnecting" && event.cause.kind === "ticket-unreachable", cutAt);
    const missed = [];
    for (const text of ["while away 1", "while away 2", "while away 3"]) missed.push(await post(ada.client, text));

    network.restore();
    const resumed = await log.until(subscribedTo("home"), cutAt);
    assert.deepEqual(resumed, { type: "subscribed", topic: "home", replayed: 3, newest: missed[2] });
    const after = await post(ada.client, "after the cut");
    await log.until(tweetWithId(after));
    assert.deepEqual(log.tweets("home"), [before, ...missed, after]);
    // Nothing was left out of the replay.
    assert.equal(log.events.filter((event) => event.type === "gap").length, 0);
    stream.close();
    await log.done;
    assert.equal(log.failure, undefined);
  } finally {
    await network.close();
  }
});

test("a server restart (close 1001) is resumed with since, without a gap or a repeat", async () => {
  const ada = await signUp();
  const bob = await signUp();
  const stream = ada.client.stream({ topics: ["home", userTopic(bob.id)], WebSocket, backoff: FAST });
  const log = record(stream);
  await log.until(subscribedTo("home"));
  await log.until(subscribedTo(userTopic(bob.id)));
  const before = await post(ada.client, "before the restart");
  await log.until(tweetWithId(before));

  const restartAt = log.events.length;
  await server.restart();
  const during = await post(ada.client, "right after the restart");
  const reconnecting = await log.until((event) => event.type === "reconnecting", restartAt);
  assert.deepEqual(reconnecting.type === "reconnecting" && reconnecting.cause, {
    kind: "closed",
    code: 1001,
    reason: "the server is stopping; reconnect",
  });
  await log.until(subscribedTo("home"), restartAt);
  // `user:<bob>` had no tweet: it resumes from the nil UUID, and still has none.
  const bobs = await log.until(subscribedTo(userTopic(bob.id)), restartAt);
  assert.equal(bobs.type === "subscribed" && bobs.newest, undefined);
  const after = await post(ada.client, "after the restart");
  await log.until(tweetWithId(after));
  assert.deepEqual(log.tweets("home"), [before, during, after]);
  assert.deepEqual(log.tweets(userTopic(bob.id)), []);
  stream.close();
  await log.done;
  assert.equal(log.failure, undefined);
});

test("a key the operator disables closes the stream with 4001, and it does not reconnect", async () => {
  const admin = createClient({ baseUrl: server.baseUrl, bearerToken: server.adminToken });
  const plan = await unwrap(admin.api.POST("/admin/v1/usage-plans", { body: { name: "stream 4001", allow_cache_refresh: false } }));
  const key = await unwrap(admin.api.POST("/admin/v1/api-keys", { body: { name: "revoked soon", plan_id: plan.id } }));
  const ada = await signUp(key.secret);
  const stream = ada.client.stream({ topics: ["home"], WebSocket, backoff: FAST });
  const log = record(stream);
  await log.until(subscribedTo("home"));

  await unwrap(admin.api.PATCH("/admin/v1/api-keys/{key_id}", { params: { path: { key_id: key.id } }, body: { enabled: false } }));
  const closed = await log.until((event) => event.type === "closed");
  await log.done;
  assert.ok(closed.type === "closed" && closed.error instanceof StreamError);
  assert.equal(closed.error.reason, "unauthorized");
  assert.deepEqual(closed.error.disconnect, { kind: "closed", code: 4001, reason: "the key was disabled" });
  // The iteration threw the same error after the event.
  assert.equal(log.failure, closed.error);
  assert.equal(stream.state, "closed");
  assert.deepEqual(
    log.events.map((event) => event.type),
    ["connecting", "open", "subscribed", "closed"],
  );
});

test("a disabled key's ticket request (403) ends a new stream at once", async () => {
  const admin = createClient({ baseUrl: server.baseUrl, bearerToken: server.adminToken });
  const plan = await unwrap(admin.api.POST("/admin/v1/usage-plans", { body: { name: "stream ticket 403", allow_cache_refresh: false } }));
  const key = await unwrap(admin.api.POST("/admin/v1/api-keys", { body: { name: "disabled", plan_id: plan.id } }));
  const ada = await signUp(key.secret);
  await unwrap(admin.api.PATCH("/admin/v1/api-keys/{key_id}", { params: { path: { key_id: key.id } }, body: { enabled: false } }));
  const stream = ada.client.stream({ topics: ["home"], WebSocket, backoff: FAST });
  const log = record(stream);
  await log.done;
  const error = log.failure;
  assert.ok(error instanceof StreamError);
  assert.equal(error.reason, "ticket");
  assert.equal(error.status, 403);
  assert.equal(error.problem?.code, "forbidden");
  assert.deepEqual(
    log.events.map((event) => event.type),
    ["connecting", "closed"],
  );
});
