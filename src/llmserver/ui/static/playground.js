// The playground: a conversation with one model through POST /v1/chat/completions, streamed
// token by token, with the reply's token counts, time to first token and tokens per second.

import {authHeaders, errorOf, readEvents} from "./api.js";
import {byId, fill, h, num} from "./dom.js";

const conversation = [];  // {role, content} of the turns so far (the system prompt apart)
let running = null;  // the AbortController of the reply being streamed
let modelNames = "";

/** The choices for the model picker: ids, then aliases and roles (chat models only). */
export function updateModels(models, defaultModel) {
  const chat = models.filter((m) => !m.embedding);
  const names = JSON.stringify(chat.map((m) => [m.id, m.aliases, m.roles]));
  if (names === modelNames) return;
  modelNames = names;
  const select = byId("model");
  const before = select.value;
  const ids = chat.map((m) => h("option", {value: m.id}, m.id));
  const aliases = chat.flatMap((m) => m.aliases.map((a) => h("option", {value: a}, `${a} → ${m.id}`)));
  const roles = chat.flatMap((m) => m.roles.map((r) => h("option", {value: r}, `role ${r} → ${m.id}`)));
  fill(
    select,
    h("optgroup", {label: "Models"}, ids),
    aliases.length ? h("optgroup", {label: "Aliases"}, aliases) : null,
    roles.length ? h("optgroup", {label: "Roles"}, roles) : null,
  );
  const wanted = before || defaultModel;
  if ([...select.options].some((o) => o.value === wanted)) select.value = wanted;
}

function numberField(id, parse) {
  const text = byId(id).value.trim();
  if (text === "") return undefined;
  const value = parse(text);
  if (Number.isNaN(value)) throw new Error(`${id} is not a number`);
  return value;
}

/** The request body the form describes, for the conversation so far plus `extra` turns. */
export function requestBody(extra = []) {
  const messages = [];
  const system = byId("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  messages.push(...conversation, ...extra);
  const body = {model: byId("model").value, messages};
  const temperature = numberField("temperature", parseFloat);
  const topP = numberField("top-p", parseFloat);
  const maxTokens = numberField("max-tokens", (t) => parseInt(t, 10));
  const seed = numberField("seed", (t) => parseInt(t, 10));
  if (temperature !== undefined) body.temperature = temperature;
  if (topP !== undefined) body.top_p = topP;
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  if (seed !== undefined) body.seed = seed;
  const stop = byId("stop-seqs").value.split("\n").filter((line) => line !== "");
  if (stop.length) body.stop = stop;
  const format = byId("format").value;
  if (format === "json_object") body.response_format = {type: "json_object"};
  if (format === "json_schema") {
    let schema;
    try {
      schema = JSON.parse(byId("schema").value);
    } catch (_) {
      throw new Error("The JSON schema is not valid JSON.");
    }
    body.response_format = {type: "json_schema", json_schema: {name: "answer", schema, strict: true}};
  }
  return body;
}

function turn(role, content, extraClass = "") {
  const text = h("div", {class: "text"}, content);
  // a reasoning model's thought: collapsed above the answer, shown once some arrives
  const thought = h("div", {class: "thought"});
  const thinking = h("details", {class: "thinking"}, h("summary", {}, "Thinking"), thought);
  thinking.hidden = true;
  const node = h("div", {class: `turn ${role} ${extraClass}`.trim()}, h("div", {class: "role"}, role),
    thinking, text);
  byId("conversation").appendChild(node);
  return {node, text, thinking, thought};
}

function setRunning(controller) {
  running = controller;
  byId("send").disabled = controller !== null;
  byId("stop").disabled = controller === null;
}

function showStats(usage, ttftMs, firstAt, endAt, stopped) {
  const parts = [];
  if (usage) {
    parts.push(`prompt tokens ${usage.prompt_tokens}`, `completion tokens ${usage.completion_tokens}`);
  }
  if (ttftMs !== null) parts.push(`time to first token ${num(ttftMs)} ms`);
  if (usage && firstAt !== null && usage.completion_tokens > 1 && endAt > firstAt) {
    parts.push(`${num((usage.completion_tokens - 1) / ((endAt - firstAt) / 1000), 1)} tokens/s`);
  }
  if (stopped) parts.push("stopped");
  const stats = byId("reply-stats");
  stats.dataset.promptTokens = usage ? usage.prompt_tokens : "";
  stats.dataset.completionTokens = usage ? usage.completion_tokens : "";
  stats.dataset.state = stopped ? "stopped" : "done";
  fill(stats, parts.join(" · "));
}

async function send(event) {
  event.preventDefault();
  if (running) return;
  const prompt = byId("prompt").value;
  if (!prompt.trim()) return;
  fill(byId("chat-error"));
  let body;
  try {
    body = requestBody([{role: "user", content: prompt}]);
  } catch (err) {
    fill(byId("chat-error"), err.message);
    return;
  }
  body.stream = true;
  body.stream_options = {include_usage: true};
  conversation.push({role: "user", content: prompt});
  turn("user", prompt);
  byId("prompt").value = "";
  const reply = turn("assistant", "", "streaming");
  const stats = byId("reply-stats");
  stats.dataset.state = "streaming";
  fill(stats, "waiting for the first token…");
  const controller = new AbortController();
  setRunning(controller);
  const started = performance.now();
  let firstAt = null;
  let usage = null;
  let content = "";
  let reasoning = "";
  let stopped = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: {...authHeaders(), "Content-Type": "application/json"},
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw await errorOf(response);
    await readEvents(response, (_event, data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const said = choice.delta || {};
        const thought = said.reasoning_content || said.reasoning;
        if (thought) {
          if (firstAt === null) firstAt = performance.now();
          reasoning += thought;
          reply.thinking.hidden = false;
          reply.thought.textContent = reasoning;
        }
        const delta = said.content;
        if (delta) {
          if (firstAt === null) firstAt = performance.now();
          content += delta;
          reply.text.textContent = content;
        }
      }
    });
  } catch (err) {
    if (err.name === "AbortError") stopped = true;
    else fill(byId("chat-error"), err.message);
  } finally {
    setRunning(null);
    reply.node.classList.remove("streaming");
    if (stopped) reply.node.classList.add("stopped");
  }
  conversation.push({role: "assistant", content});
  showStats(usage, firstAt === null ? null : firstAt - started, firstAt, performance.now(), stopped);
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function pyLiteral(value, indent = 0) {
  // JSON is almost Python: only true/false/null differ
  return JSON.stringify(value, null, 4)
    .replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None")
    .split("\n").join("\n" + " ".repeat(indent));
}

/** The request as a curl command (the key as $LLMSERVER_API_KEY, never its text). */
export function curlCommand() {
  const body = {...requestBody(draft()), stream: true, stream_options: {include_usage: true}};
  const origin = window.location.origin;
  return [
    `curl ${origin}/v1/chat/completions \\`,
    `  -H "Authorization: Bearer $LLMSERVER_API_KEY" \\`,
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join("\n");
}

/** The request as Python with the official openai package. */
export function pythonCode() {
  const body = requestBody(draft());
  const {model, messages, response_format: format, ...rest} = body;
  const extra = [];
  for (const [name, value] of Object.entries(rest)) extra.push(`    ${name}=${pyLiteral(value, 4)},`);
  if (format) extra.push(`    response_format=${pyLiteral(format, 4)},`);
  return [
    "import os",
    "",
    "from openai import OpenAI",
    "",
    "client = OpenAI(",
    `    base_url=${JSON.stringify(window.location.origin + "/v1")},`,
    '    api_key=os.environ.get("LLMSERVER_API_KEY", "none"),',
    ")",
    "stream = client.chat.completions.create(",
    `    model=${JSON.stringify(model)},`,
    `    messages=${pyLiteral(messages, 4)},`,
    ...extra,
    "    stream=True,",
    '    stream_options={"include_usage": True},',
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    '        print(chunk.choices[0].delta.content, end="", flush=True)',
    "    if chunk.usage:",
    "        print()",
    "        print(chunk.usage)",
  ].join("\n");
}

function draft() {
  const prompt = byId("prompt").value;
  return prompt ? [{role: "user", content: prompt}] : [];
}

async function copy(kind) {
  let text;
  try {
    text = kind === "curl" ? curlCommand() : pythonCode();
  } catch (err) {
    fill(byId("copy-note"), err.message);
    return;
  }
  const code = byId("code");
  code.hidden = false;
  code.dataset.kind = kind;
  fill(code, text);
  let note = "Shown below; select it to copy.";
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      note = "Copied, and shown below.";
    } catch (_) { /* the permission was refused: the text is shown */ }
  }
  fill(byId("copy-note"), note);
}

export function initPlayground() {
  byId("chat-form").addEventListener("submit", send);
  byId("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) byId("chat-form").requestSubmit();
  });
  byId("stop").addEventListener("click", () => {
    if (running) running.abort();  // the server sees the disconnect and cancels the generation
  });
  byId("clear").addEventListener("click", () => {
    if (running) running.abort();
    conversation.length = 0;
    fill(byId("conversation"));
    fill(byId("reply-stats"));
    fill(byId("chat-error"));
  });
  byId("format").addEventListener("change", () => {
    const schema = byId("format").value === "json_schema";
    byId("schema").hidden = !schema;
    byId("schema-label").hidden = !schema;
  });
  byId("copy-curl").addEventListener("click", () => copy("curl"));
  byId("copy-python").addEventListener("click", () => copy("python"));
}
