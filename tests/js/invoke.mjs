// One chat call through LangChain's ChatOpenAI, as LibreChat's agents make it; prints JSON.
// Usage: node invoke.mjs <base URL> <API key> <end user> <max retries>
import { ChatOpenAI } from "@langchain/openai";

const [baseURL, apiKey, user, maxRetries] = process.argv.slice(2);
const model = new ChatOpenAI({
  model: "gpt-4o-mini",
  apiKey,
  maxRetries: Number(maxRetries),
  configuration: { baseURL, defaultHeaders: { "X-Solaris-User": user } },
});
const started = Date.now();
try {
  const answer = await model.invoke("Oi! Pode me dizer algo curto?");
  console.log(JSON.stringify({ ok: true, text: answer.content, seconds: (Date.now() - started) / 1000 }));
} catch (error) {
  console.log(JSON.stringify({
    ok: false, name: error.name, message: error.message, seconds: (Date.now() - started) / 1000,
  }));
}
