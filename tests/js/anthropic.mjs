// One Anthropic Messages call through the official @anthropic-ai/sdk, as a client pointed at the
// gateway makes it; prints one JSON line.
// Usage: node anthropic.mjs <base URL> <API key> <end user> <model> <plain|stream> [max retries]
//   <base URL> is the gateway root WITHOUT /v1: the SDK posts to `${baseURL}/v1/messages`.
//   The key goes out as `x-api-key`; the end user as the `X-Solaris-User` header.
// Output: {ok, text, usage, stopReason, status, errorType, errorMessage, errorName, attempts, seconds}
//   `attempts` counts the HTTP requests the SDK made (1 + its retries).
import Anthropic from "@anthropic-ai/sdk";

const [baseURL, apiKey, user, model, mode = "plain", maxRetries = "0"] = process.argv.slice(2);
let attempts = 0;
const client = new Anthropic({
  baseURL,
  apiKey,
  maxRetries: Number(maxRetries),
  defaultHeaders: { "X-Solaris-User": user },
  fetch: (url, init) => {
    attempts += 1;
    return fetch(url, init);
  },
});
const params = {
  model,
  max_tokens: 256,
  system: "Responda em português.",
  messages: [{ role: "user", content: "Oi! Pode me dizer algo curto?" }],
  metadata: { user_id: user },
};
const started = Date.now();
const seconds = () => (Date.now() - started) / 1000;
const textOf = (message) =>
  message.content.filter((block) => block.type === "text").map((block) => block.text).join("");
try {
  let message;
  let streamed = "";
  if (mode === "stream") {
    const stream = client.messages.stream(params);
    stream.on("text", (delta) => {
      streamed += delta;
    });
    message = await stream.finalMessage();
  } else {
    message = await client.messages.create(params);
  }
  const text = mode === "stream" ? streamed : textOf(message);
  console.log(JSON.stringify({
    ok: true, text, usage: message.usage, stopReason: message.stop_reason, attempts, seconds: seconds(),
  }));
} catch (error) {
  console.log(JSON.stringify({
    ok: false,
    status: error?.status ?? null,
    errorType: error?.error?.error?.type ?? error?.type ?? null,
    errorMessage: error?.error?.error?.message ?? error?.message ?? String(error),
    errorName: error?.constructor?.name ?? error?.name ?? null,
    rawMessage: error?.message ?? null,
    attempts,
    seconds: seconds(),
  }));
}
