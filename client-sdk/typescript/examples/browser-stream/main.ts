// A live home timeline in a browser: the SDK's stream with the browser's own WebSocket.
// Bundle it with the SDK for the page (test/stream-browser.test.ts does, with esbuild):
//   npx esbuild examples/browser-stream/main.ts --bundle --format=esm --outfile=main.js
// The page is served by the API's own origin here, so the ticket request needs no CORS;
// it reads the API key and the user's token from its URL's fragment (`#key=…&token=…`),
// which stands in for the app's own sign-in.
import { createClient, type Tweet } from "@minitter/client";

const credentials = new URLSearchParams(location.hash.slice(1));
const client = createClient({
  baseUrl: location.origin,
  apiKey: credentials.get("key") ?? "",
  bearerToken: credentials.get("token") ?? "",
});

const status = document.querySelector("#status") as HTMLOutputElement;
const list = document.querySelector("#tweets") as HTMLUListElement;

function show(tweet: Tweet): void {
  const item = document.createElement("li");
  item.dataset["id"] = tweet.id;
  item.textContent = tweet.text;
  list.prepend(item);
}

// `globalThis.WebSocket` is the browser's: no `WebSocket` option needed.
const stream = client.stream({ topics: ["home"] });
addEventListener("pagehide", () => stream.close());
try {
  for await (const event of stream) {
    switch (event.type) {
      case "connecting":
      case "open":
        status.value = event.type;
        break;
      case "subscribed":
        status.value = `live on ${event.topic}`;
        break;
      case "reconnecting":
        status.value = `reconnecting in ${Math.round(event.delayMs)} ms`;
        break;
      case "tweet.created":
        show(event.tweet);
        break;
      case "tweet.deleted":
        list.querySelector(`li[data-id="${event.deleted.tweet_id}"]`)?.remove();
        break;
      case "gap":
        status.value = "some tweets were missed: reload the timeline";
        break;
      case "closed":
        status.value = "closed";
        break;
    }
  }
} catch (error) {
  // The stream gave up for good (revoked credentials): sign in again.
  status.value = `stopped: ${error instanceof Error ? error.message : String(error)}`;
}
