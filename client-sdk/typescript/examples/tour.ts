// Every snippet of client-sdk/typescript/README.md, in order: each `#region` is one
// snippet, copied verbatim (test/readme.test.ts checks it), type-checked by `tsc`, and
// run against a live server by `npm test` (MINITTER_BASE_URL and MINITTER_API_KEY).

// #region client
import {
  type Attempt,
  conditional,
  createClient,
  MinitterError,
  paginate,
  unwrap,
  unwrapResponse,
} from "@minitter/client";

const client = createClient({
  baseUrl: process.env["MINITTER_BASE_URL"] ?? "https://api.example.com",
  apiKey: process.env["MINITTER_API_KEY"] ?? "",
  timeoutMs: 10_000, // per attempt; 30 s by default
});

// Sign up, log in (operation `log_in`: `POST /v1/auth/token`), then act as that user.
const username = `ada_${crypto.randomUUID().slice(0, 8)}`;
const email = `${username}@example.com`;
const password = "correct horse battery staple";
const user = await unwrap(client.api.POST("/v1/users", { body: { username, email, password } }));
const { access_token } = await unwrap(client.api.POST("/v1/auth/token", { body: { email, password } }));
const ada = client.withBearerToken(access_token);
const me = await unwrap(ada.api.GET("/v1/me"));
console.log(`signed in as ${me.username}`);
// #endregion

// #region bodies
const first = await unwrap(ada.api.POST("/v1/tweets", { body: { text: "Hello, Minitter!" } }));
// A body of another media type is given as it is, with a serializer that leaves it be:
const png = Uint8Array.from(
  atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"),
  (c) => c.charCodeAt(0),
);
await unwrap(
  ada.api.PUT("/v1/me/picture", {
    body: png as unknown as string, // the spec types a binary body as a string
    bodySerializer: (body: unknown) => body as BodyInit,
    headers: { "content-type": "application/octet-stream" },
  }),
);
// … which is what `ada.putPicture(png)` does.
// #endregion

// #region pagination
const page = await unwrap(ada.api.GET("/v1/timeline", { params: { query: { limit: 20 } } }));
console.log(`${page.items.length} tweets, next page: ${page.next_page}`);

for await (const tweet of ada.timeline({ limit: 100 })) {
  console.log(tweet.created_at, tweet.text);
}
// Other lists have userTweets(), followers() and following(); any list at all:
const posts = paginate((page) =>
  unwrap(ada.api.GET("/v1/users/{user_id}/tweets", { params: { path: { user_id: user.id }, query: { ...page, limit: 50 } } })),
);
for await (const tweet of posts) console.log(tweet.id);
// #endregion

// #region retries
const patient = client.withRetry({ maxRetries: 5, maxDelayMs: 4000 });
const once = client.withRetry({ maxRetries: 0 }); // every request sent once
const observed = createClient({
  baseUrl: process.env["MINITTER_BASE_URL"] ?? "https://api.example.com",
  apiKey: process.env["MINITTER_API_KEY"] ?? "",
  onAttempt: ({ operation, attempt, status, error, retryInMs }: Attempt) => {
    if (retryInMs !== undefined) console.log(`${operation} attempt ${attempt}: ${status ?? error}, retry in ${retryInMs} ms`);
  },
});
await unwrap(observed.api.GET("/v1/users/{user_id}", { params: { path: { user_id: user.id } } }));
// #endregion

// #region errors
try {
  await unwrap(ada.api.POST("/v1/tweets", { body: { text: "x".repeat(281) } }));
} catch (error) {
  if (!(error instanceof MinitterError)) throw error; // no answer: a network failure, a timeout…
  const problem = error.problem; // undefined when the answer had no problem document
  console.error(error.status, problem?.code, problem?.detail, `request ${problem?.request_id}`);
  for (const violation of problem?.errors ?? []) {
    console.error(`  ${violation.in} ${violation.pointer}: ${violation.message}`);
  }
}
// #endregion

// #region rate-limits
const { value: profile, rateLimit } = await unwrapResponse(ada.api.GET("/v1/me"));
const quota = rateLimit?.quota; // the plan's quota, when it has one
if (quota) console.log(`${profile.username}: ${quota.remaining} of ${quota.limit} left, resets in ${quota.resetSeconds} s`);
const throttle = rateLimit?.throttle; // else its throttle (a token bucket)
if (throttle) console.log(`burst of ${throttle.limit}, ${throttle.remaining} left now`);
// #endregion

// #region conditional
const path = { tweet_id: first.id };
const read = await conditional(ada.api.GET("/v1/tweets/{tweet_id}", { params: { path } }));
// … later, naming the copy you have:
const header = read.etag === undefined ? {} : { "If-None-Match": read.etag };
const reread = await conditional(ada.api.GET("/v1/tweets/{tweet_id}", { params: { path, header } }));
if (reread.notModified) console.log("unchanged");
else console.log(`now ${reread.value.text}`);
// #endregion

// #region deadline
const deadline = AbortSignal.timeout(20_000); // across every attempt and wait
const mine = await unwrap(ada.api.GET("/v1/me", { signal: deadline }));
// #endregion

// #region stream
import { StreamError, userTopic } from "@minitter/client";
import { WebSocket } from "ws"; // Node 20 has no global WebSocket; browsers and Node 22+ need no option

// Ada's home timeline from her first tweet on (replayed, then live), and her own tweets live.
const stream = ada.stream({ topics: [{ topic: "home", since: first.id }, userTopic(user.id)], WebSocket });
try {
  for await (const event of stream) {
    switch (event.type) {
      case "subscribed":
        if (event.topic === "home") await unwrap(ada.api.POST("/v1/tweets", { body: { text: "Live!" } }));
        break;
      case "tweet.created":
        console.log(`${event.topic}: ${event.tweet.text}`);
        if (event.topic === "home" && event.tweet.text === "Live!") stream.close(); // an app would keep reading
        break;
      case "gap": // more tweets were missed than a replay holds (100): read the REST timeline
        console.log(`refetch ${event.topic} from the REST API`);
        break;
      case "reconnecting": // the socket dropped; no tweet is missed or repeated across the switch
        console.log(`reconnecting in ${event.delayMs} ms (${event.cause.kind})`);
        break;
    }
  }
} catch (error) {
  if (!(error instanceof StreamError)) throw error;
  console.error(`the stream stopped for good: ${error.message}`); // 4001, or a ticket refused with 401/403
}
// #endregion

console.log(`done: ${[patient, once, mine].length} clients and calls used`);
