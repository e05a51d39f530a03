// Drives a based4j server with the official OpenAI client and prints what it got as one JSON object on standard
// output; the Java test compares it with the engine's own results. Settings come from the environment:
//   BASED4J_URL    the API's base URL (http://127.0.0.1:PORT/v1)
//   BASED4J_KEY    the server's API key
//   BASED4J_MODEL  the served model's id
//   PROMPT_IDS     a prompt as a JSON array of token ids
//   PROMPT_TEXT    a text prompt
//   MAX_TOKENS     max_tokens of every request
//   TOO_MANY       a max_tokens over the server's limit
import OpenAI from "openai";

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error("the environment variable " + name + " is not set");
  }
  return v;
};

const baseURL = env("BASED4J_URL");
const model = env("BASED4J_MODEL");
const promptIds = JSON.parse(env("PROMPT_IDS"));
const promptText = env("PROMPT_TEXT");
const maxTokens = Number(env("MAX_TOKENS"));
const tooMany = Number(env("TOO_MANY"));
// no retries: a refused request must surface at once, as the error the server sent
const client = new OpenAI({ baseURL, apiKey: env("BASED4J_KEY"), maxRetries: 0, timeout: 60_000 });

/** The fields of an error the client raised: its class and what it parsed from the server's answer. */
async function failure(call) {
  try {
    await call();
  } catch (e) {
    return {
      isApiError: e instanceof OpenAI.APIError,
      name: e.constructor.name,
      status: e.status ?? null,
      type: e.type ?? null,
      param: e.param ?? null,
      code: e.code ?? null,
      message: e.message,
    };
  }
  return { name: "none: the call succeeded" };
}

const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);

const completion = await client.completions.create({ model, prompt: promptIds, max_tokens: maxTokens,
                                                     temperature: 0 });
out.completion = { object: completion.object, model: completion.model, text: completion.choices[0].text,
                   finish_reason: completion.choices[0].finish_reason, usage: completion.usage };

const textCompletion = await client.completions.create({ model, prompt: promptText, max_tokens: maxTokens,
                                                         temperature: 0 });
out.text_completion = { text: textCompletion.choices[0].text };

const stream = await client.completions.create({ model, prompt: promptIds, max_tokens: maxTokens, temperature: 0,
                                                 stream: true });
out.completion_stream = { text: "", chunks: 0, finish_reasons: [], objects: [] };
for await (const chunk of stream) {
  const s = out.completion_stream;
  s.chunks++;
  s.text += chunk.choices[0].text;
  if (chunk.choices[0].finish_reason) s.finish_reasons.push(chunk.choices[0].finish_reason);
  if (!s.objects.includes(chunk.object)) s.objects.push(chunk.object);
}

const messages = [{ role: "system", content: "You answer briefly." }, { role: "user", content: promptText }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0 });
out.chat = { object: chat.object, role: chat.choices[0].message.role, content: chat.choices[0].message.content,
             finish_reason: chat.choices[0].finish_reason, usage: chat.usage };

const chatStream = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0,
                                                          stream: true, stream_options: { include_usage: true } });
out.chat_stream = { content: "", roles: [], finish_reasons: [], objects: [], usage: null, usage_chunks: 0 };
for await (const chunk of chatStream) {
  const s = out.chat_stream;
  if (chunk.usage) {
    s.usage = chunk.usage;
    s.usage_chunks++;
  }
  if (chunk.choices.length === 0) continue;  // the usage chunk has no choices
  const delta = chunk.choices[0].delta;
  if (delta.role) s.roles.push(delta.role);
  if (delta.content) s.content += delta.content;
  if (chunk.choices[0].finish_reason) s.finish_reasons.push(chunk.choices[0].finish_reason);
  if (!s.objects.includes(chunk.object)) s.objects.push(chunk.object);
}

out.errors = {
  too_many_tokens: await failure(() => client.completions.create({ model, prompt: promptIds, max_tokens: tooMany })),
  too_many_tokens_streamed: await failure(async () => {
    const s = await client.completions.create({ model, prompt: promptIds, max_tokens: tooMany, stream: true });
    for await (const chunk of s) { /* a refused request never starts its stream */ }
  }),
  wrong_type: await failure(() => client.completions.create({ model, prompt: promptIds, temperature: "hot" })),
  bad_chat_role: await failure(() => client.chat.completions.create({ model,
      messages: [{ role: "wizard", content: "hi" }] })),
  unknown_model: await failure(() => client.completions.create({ model: "gpt-unknown", prompt: promptIds })),
  wrong_key: await failure(() => new OpenAI({ baseURL, apiKey: "sk-wrong", maxRetries: 0 }).models.list()),
};

process.stdout.write(JSON.stringify(out) + "\n");
