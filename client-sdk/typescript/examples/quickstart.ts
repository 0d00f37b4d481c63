import { createClient, MinitterError, unwrap } from "@minitter/client";

// An API key from your operator (the development server prints a demo key at first start).
const client = createClient({ baseUrl: "http://127.0.0.1:8080", apiKey: process.env["MINITTER_API_KEY"] ?? "" });

const user = await unwrap(
  client.api.POST("/v1/users", {
    body: { username: "ada_l", email: "ada@example.com", password: "correct horse battery staple" },
  }),
);
const { access_token } = await unwrap(
  client.api.POST("/v1/auth/token", { body: { email: "ada@example.com", password: "correct horse battery staple" } }),
);
const ada = client.withBearerToken(access_token);

await unwrap(ada.api.POST("/v1/tweets", { body: { text: "Hello, Minitter!" } }));
for await (const tweet of ada.timeline({ limit: 20 })) {
  console.log(tweet.created_at, tweet.text);
}

try {
  await unwrap(client.api.GET("/v1/users/{user_id}", { params: { path: { user_id: user.id } } }));
} catch (error) {
  if (error instanceof MinitterError) console.error(error.status, error.problem?.code);
}
