// One agent turn through @librechat/agents, configured the way LibreChat configures an agent on a
// *custom endpoint* (an OpenAI-compatible baseURL): prints one JSON line.
// Usage: node librechat_agent.mjs <base URL> <API key> <end user> <model> [useResponsesApi]
//   <base URL> includes /v1, as in librechat.yaml (`baseURL: http://gateway/v1`).
// Output: {ok, text, errorMessage, errorName, status, code, lcErrorCode, librechatText, seconds}
//   `librechatText` is what LibreChat's AgentClient would persist as the failed turn's text
//   (getUserFacingRequestError in api/server/controllers/agents/client.js, restated below).
//
// How LibreChat builds this (v0.8.x, read from its source):
// - packages/api/src/endpoints/custom/initialize.ts: modelOptions = {...model_parameters, user: req.user.id},
//   then getOpenAIConfig(apiKey, {reverseProxyUrl: baseURL, headers, modelOptions, ...}).
// - packages/api/src/endpoints/openai/config.ts + llm.ts: llmConfig = {streaming: true, model, ...modelOptions
//   (incl. `user`), apiKey}; configOptions = {baseURL, defaultHeaders: headers}.
// - packages/api/src/agents/run.ts (createRun): llmConfig = {provider, streaming, streamUsage, ...model_parameters};
//   resolveConfigHeaders() fills {{LIBRECHAT_USER_EMAIL}} etc. in configuration.defaultHeaders; and for a custom
//   endpoint (provider openAI, endpoint != provider) streamUsage = false, usage = true.
import { randomUUID } from "node:crypto";
import { HumanMessage } from "@langchain/core/messages";
import { Providers, Run } from "@librechat/agents";

const [baseURL, apiKey, user, model, responses] = process.argv.slice(2);
const useResponsesApi = responses === "responses" || responses === "true";
const LANGCHAIN_ERROR_TYPES = { MODEL_NOT_FOUND: "model_not_found", MODEL_RATE_LIMIT: "model_rate_limit" };

/** LibreChat's getUserFacingRequestError (agents client) + resolveLangChainError, restated. */
function librechatText(error) {
  const base = "An error occurred while processing the request";
  if (!error?.message) return base;
  const code =
    (typeof error.lc_error_code === "string" && error.lc_error_code.toUpperCase()) ||
    /langchain\S*\/errors\/([A-Za-z_]+)/i.exec(error.message)?.[1]?.toUpperCase();
  if (code && LANGCHAIN_ERROR_TYPES[code]) return JSON.stringify({ type: LANGCHAIN_ERROR_TYPES[code] });
  const stripped = error.message.replace(/\s*Troubleshooting URL:\s*https?:\/\/\S*langchain\S*\/errors\/[A-Za-z_]+\/?\s*/g, " ").trim();
  return stripped ? `${base}: ${stripped}` : base;
}

const started = Date.now();
const seconds = () => (Date.now() - started) / 1000;
let text = "";
try {
  const run = await Run.create({
    runId: randomUUID(),
    graphConfig: {
      type: "standard",
      instructions: "Responda em português.",
      llmConfig: {
        provider: Providers.OPENAI,
        streaming: true,
        streamUsage: false,
        usage: true,
        model,
        user,
        apiKey,
        ...(useResponsesApi ? { useResponsesApi: true } : {}),
        configuration: { baseURL, defaultHeaders: { "X-Solaris-User": user } },
      },
    },
    customHandlers: {
      on_message_delta: {
        handle: (_event, data) => {
          for (const part of data?.delta?.content ?? []) {
            if (part?.type === "text" && typeof part.text === "string") text += part.text;
          }
        },
      },
    },
    returnContent: true,
  });
  const content = await run.processStream(
    { messages: [new HumanMessage("Olá")] },
    { runId: randomUUID(), streamMode: "values", version: "v2", configurable: { thread_id: randomUUID() } },
  );
  const returned = (content ?? [])
    .map((part) => (typeof part === "string" ? part : part?.type === "text" ? part.text : ""))
    .join("");
  console.log(JSON.stringify({ ok: true, text: returned || text, streamedText: text, seconds: seconds() }));
} catch (error) {
  console.log(JSON.stringify({
    ok: false,
    text,
    errorMessage: error?.message ?? String(error),
    errorName: error?.name ?? null,
    status: error?.status ?? null,
    code: error?.code ?? error?.error?.code ?? null,
    lcErrorCode: error?.lc_error_code ?? null,
    librechatText: librechatText(error),
    seconds: seconds(),
  }));
}
process.exit(0);
