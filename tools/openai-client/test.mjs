// The official openai npm client against a started mach-serve: models list,
// chat (plain, streamed, with logprobs), completions, tool calls round trip
// (plain, streamed and through the SDK's stream helper), reasoning_content,
// prefix-cache reuse, errors, auth, and a clean shutdown on SIGTERM.
//
// Usage: node test.mjs --serve PATH/TO/mach-serve --scripted DIR
//   --serve     the mach-serve binary (started twice on free ports)
//   --scripted  a scripted checkpoint (go run ./tools/openai-client/scripted-model DIR)
// The first server serves mach's default model (found beside the binary),
// the second the scripted checkpoint with an API key. Any failure exits 1.

import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import OpenAI from "openai";

const { values: args } = parseArgs({
  options: { serve: { type: "string" }, scripted: { type: "string" } },
});
if (!args.serve || !args.scripted) {
  console.error("usage: node test.mjs --serve PATH/TO/mach-serve --scripted DIR");
  process.exit(2);
}

// start runs mach-serve on a free port and resolves when it listens.
function start(name, extra) {
  const argv = ["--port", "0", "--log-format", "json", ...extra];
  const proc = spawn(args.serve, argv, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not listening after 60 s:\n${log}`)), 60_000);
    let buf = "";
    proc.stderr.on("data", (d) => {
      log += d;
      buf += d;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line);
          if (rec.msg === "listening") {
            clearTimeout(timer);
            resolve(rec);
          }
        } catch {
          // a line that is not a JSON record (a warning on stderr)
        }
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name}: mach-serve exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
  return { name, proc, exited, listening, log: () => log };
}

// stop sends SIGTERM and expects a clean exit (status 0) after the drain.
async function stop(server) {
  server.proc.kill("SIGTERM");
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`${server.name}: no exit 20 s after SIGTERM`)), 20_000));
  const { code, signal } = await Promise.race([server.exited, timeout]);
  assert.equal(code, 0, `${server.name}: exit status ${code ?? signal} after SIGTERM:\n${server.log()}`);
  assert.match(server.log(), /shutting down: draining in-flight requests/);
}

let failed = 0;
let passed = 0;
async function test(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok    ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL  ${name}\n      ${String(err?.stack ?? err).split("\n").join("\n      ")}`);
  }
}

async function rejects(promise, cls, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof cls, `want ${cls.name}, got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, status);
    return err;
  }
  assert.fail(`want ${cls.name}, got success`);
}

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

const servers = [start("default model", []), start("scripted", [args.scripted, "--api-key", "s3cret", "--served-model-name", "scripted"])];
let exitCode = 0;
try {
  const [def, scr] = await Promise.all(servers.map((s) => s.listening));
  const client = new OpenAI({ baseURL: `http://${def.addr}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
  const scripted = new OpenAI({ baseURL: `http://${scr.addr}/v1`, apiKey: "s3cret", maxRetries: 0, timeout: 120_000 });
  const question = [{ role: "user", content: "How do I use itertools.chain()?" }];

  await test("models list", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ["default"]);
    const s = await scripted.models.retrieve("scripted");
    assert.equal(s.id, "scripted");
  });

  let plain;
  await test("chat completion", async () => {
    plain = await client.chat.completions.create({ model: "default", messages: question, max_tokens: 24, temperature: 0 });
    assert.match(plain.id, /^chatcmpl-/);
    assert.equal(plain.object, "chat.completion");
    const c = plain.choices[0];
    assert.equal(c.message.role, "assistant");
    assert.ok(c.message.content.length > 0, "some text");
    assert.ok(["stop", "length"].includes(c.finish_reason));
    assert.ok(plain.usage.prompt_tokens > 0);
    assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 24);
    assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
  });

  await test("streamed chat gives the same text, then usage", async () => {
    const stream = await client.chat.completions.create({
      model: "default", messages: question, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let finish = null;
    let usage = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.delta?.content ?? "";
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.ok(chunks > 2, "several chunks");
    assert.equal(text, plain.choices[0].message.content);
    assert.equal(finish, plain.choices[0].finish_reason);
    assert.equal(usage?.completion_tokens, plain.usage.completion_tokens);
  });

  await test("logprobs", async () => {
    const r = await client.chat.completions.create({
      model: "default", messages: question, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3,
    });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, r.usage.completion_tokens);
    for (const t of lp) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.equal(t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob, true);
      assert.deepEqual(t.bytes, [...Buffer.from(t.token, "utf8")]);
    }
    // The chat parser trims the whitespace that ends a message.
    assert.equal(lp.map((t) => t.token).join("").trim(), r.choices[0].message.content.trim());
  });

  await test("next turn reuses the cached prefix", async () => {
    const r = await client.chat.completions.create({
      model: "default", temperature: 0, max_tokens: 8,
      messages: [...question, { role: "assistant", content: plain.choices[0].message.content }, { role: "user", content: "And itertools.islice()?" }],
    });
    assert.ok(r.usage.prompt_tokens_details.cached_tokens > 10, `cached_tokens ${r.usage.prompt_tokens_details.cached_tokens}`);
  });

  await test("response_format json_object", async () => {
    const r = await client.chat.completions.create({
      model: "default", messages: [{ role: "user", content: "Describe itertools.chain as JSON." }], max_tokens: 64, temperature: 0,
      response_format: { type: "json_object" },
    });
    const text = r.choices[0].message.content;
    assert.ok(text.startsWith("{"), `an object: ${JSON.stringify(text)}`);
    if (r.choices[0].finish_reason === "stop") JSON.parse(text);
    else assert.equal(r.choices[0].finish_reason, "length");
  });

  await test("completions", async () => {
    const r = await client.completions.create({ model: "default", prompt: "def fib(n):\n", max_tokens: 16, temperature: 0 });
    assert.equal(r.object, "text_completion");
    assert.ok(r.choices[0].text.length > 0);
    assert.equal(r.usage.completion_tokens, 16);
  });

  await test("errors: unknown model, n > 1, bad temperature", async () => {
    const nf = await rejects(client.chat.completions.create({ model: "gpt-4o", messages: question }), OpenAI.NotFoundError, 404);
    assert.equal(nf.code, "model_not_found");
    const n = await rejects(client.chat.completions.create({ model: "default", messages: question, n: 2 }), OpenAI.BadRequestError, 400);
    assert.equal(n.param, "n");
    const t = await rejects(client.chat.completions.create({ model: "default", messages: question, temperature: 7 }), OpenAI.BadRequestError, 400);
    assert.equal(t.param, "temperature");
  });

  await test("auth: a wrong key is refused", async () => {
    const bad = new OpenAI({ baseURL: `http://${scr.addr}/v1`, apiKey: "wrong", maxRetries: 0 });
    await rejects(bad.models.list(), OpenAI.AuthenticationError, 401);
  });

  await test("reasoning_content apart from content", async () => {
    const r = await scripted.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "Hi" }] });
    const m = r.choices[0].message;
    assert.equal(m.content, "Hello from mach!");
    assert.equal(m.reasoning_content.trim(), "Greeting the user.");
  });

  await test("tool calls round trip", async () => {
    const messages = [{ role: "user", content: "What is the weather in Paris?" }];
    const r = await scripted.chat.completions.create({ model: "scripted", messages, tools: [weatherTool] });
    const c = r.choices[0];
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.content, null);
    assert.equal(c.message.tool_calls.length, 1);
    const call = c.message.tool_calls[0];
    assert.equal(call.type, "function");
    assert.match(call.id, /^call_/);
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
    messages.push(c.message, { role: "tool", tool_call_id: call.id, content: JSON.stringify({ sky: "sunny", celsius: 21 }) });
    const r2 = await scripted.chat.completions.create({ model: "scripted", messages, tools: [weatherTool] });
    assert.equal(r2.choices[0].message.content, "It is sunny in Paris.");
    assert.equal(r2.choices[0].finish_reason, "stop");
  });

  await test("streamed tool call deltas", async () => {
    const stream = await scripted.chat.completions.create({
      model: "scripted", messages: [{ role: "user", content: "Weather?" }], tools: [weatherTool], stream: true,
    });
    const calls = [];
    let finish = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.finish_reason) finish = c.finish_reason;
      for (const d of c.delta.tool_calls ?? []) {
        calls[d.index] ??= { id: "", name: "", arguments: "" };
        if (d.id) calls[d.index].id = d.id;
        if (d.function?.name) calls[d.index].name += d.function.name;
        calls[d.index].arguments += d.function?.arguments ?? "";
      }
    }
    assert.equal(finish, "tool_calls");
    assert.equal(calls.length, 1);
    assert.match(calls[0].id, /^call_/);
    assert.equal(calls[0].name, "get_weather");
    assert.deepEqual(JSON.parse(calls[0].arguments), { city: "Paris" });
  });

  await test("the SDK's stream helper assembles the tool call", async () => {
    const runner = scripted.chat.completions.stream({ model: "scripted", messages: [{ role: "user", content: "Weather?" }], tools: [weatherTool] });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
  });

  await test("tool_choice named forces that call", async () => {
    const searchTool = { type: "function", function: { name: "search_docs", description: "Search", parameters: { type: "object", properties: { query: { type: "string" } } } } };
    const r = await scripted.chat.completions.create({
      model: "scripted", messages: [{ role: "user", content: "What is the weather in Paris?" }], tools: [searchTool, weatherTool],
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.tool_calls.length, 1);
    assert.equal(c.message.tool_calls[0].function.name, "get_weather");
    assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), { city: "Paris" });
    const runner = scripted.chat.completions.stream({
      model: "scripted", messages: [{ role: "user", content: "Weather?" }], tools: [searchTool, weatherTool], tool_choice: "required",
    });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, "tool_calls");
    assert.equal(final.choices[0].message.tool_calls[0].function.name, "get_weather");
    assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { city: "Paris" });
    const bad = await rejects(scripted.chat.completions.create({
      model: "scripted", messages: [{ role: "user", content: "Weather?" }], tools: [weatherTool],
      tool_choice: { type: "function", function: { name: "nope" } },
    }), OpenAI.BadRequestError, 400);
    assert.equal(bad.param, "tool_choice");
  });

  await test("tool_choice named on the default model", async () => {
    const r = await client.chat.completions.create({
      model: "default", messages: [{ role: "user", content: "What is the weather in Paris?" }], tools: [weatherTool],
      tool_choice: { type: "function", function: { name: "get_weather" } }, max_tokens: 200, temperature: 0,
    });
    const c = r.choices[0];
    if (c.finish_reason === "tool_calls") {
      assert.equal(c.message.tool_calls[0].function.name, "get_weather");
      const args = JSON.parse(c.message.tool_calls[0].function.arguments);
      assert.equal(typeof args, "object");
    } else {
      assert.equal(c.finish_reason, "length");
      assert.ok(c.message.content.startsWith('<tool_call>\n{"name": "get_weather", "arguments": {'), JSON.stringify(c.message.content));
    }
    console.log(`      default model: ${c.finish_reason} ${JSON.stringify(c.message.tool_calls?.[0]?.function ?? c.message.content).slice(0, 160)}`);
  });

  await test("metrics", async () => {
    const text = await (await fetch(`http://${def.addr}/metrics`)).text();
    assert.match(text, /mach_requests_total\{endpoint="chat_completions",status="200"\} \d+/);
    assert.match(text, /mach_time_to_first_token_seconds_count [1-9]/);
    assert.match(text, /mach_prefix_cache_hit_tokens_total [1-9]/);
  });
} catch (err) {
  console.log(`FAIL  start-up\n      ${err?.stack ?? err}`);
  failed++;
} finally {
  for (const s of servers) {
    try {
      await stop(s);
      passed++;
      console.log(`ok    ${s.name}: clean exit after SIGTERM`);
    } catch (err) {
      failed++;
      console.log(`FAIL  ${s.name}: shutdown\n      ${err?.stack ?? err}`);
      s.proc.kill("SIGKILL");
    }
  }
}
console.log(`openai client test: ${passed} passed, ${failed} failed`);
exitCode = failed > 0 ? 1 : 0;
process.exit(exitCode);
