// Structured outputs against independent references: every sample that the server says stopped
// must parse and validate with ajv (+ ajv-formats) against its schema; samples are drawn at
// temperature 1 from the bundled model and from a random-weight model (`pagellm model-gen`),
// so the grammar, not the model, is what makes them valid. The official openai client's zod
// helper (zodResponseFormat + chat.completions.parse) must work unchanged.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { startServer } from "./lib/server.mjs";
import { runPl, makeTempDir, sourcePath } from "./lib/util.mjs";

const BUNDLED = sourcePath("models/pagellm-default.gguf");
const dir = makeTempDir("pagellm-structured-");
const RANDOM = join(dir, "random.gguf");
// A ChatML template with Hermes tool calls (the random model has none of its own).
const TEMPLATE = join(dir, "hermes.jinja");
writeFileSync(TEMPLATE, `{%- if tools %}<|im_start|>system
Tools: {{ tools | tojson }}<|im_end|>
{% endif %}{%- for m in messages %}<|im_start|>{{ m.role }}
{%- if m.tool_calls %}{% for tc in m.tool_calls %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments }}}
</tool_call>{% endfor %}{% else %}
{{ m.content }}{% endif %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}`);

const SCHEMAS = {
  flat: {
    type: "object",
    properties: {
      name: { type: "string", maxLength: 12 },
      age: { type: "integer", minimum: 0, maximum: 130 },
      score: { type: "number" },
      ok: { type: "boolean" },
      nothing: { type: "null" },
    },
    required: ["name", "age", "ok"],
    additionalProperties: false,
  },
  enums_and_const: {
    type: "object",
    properties: {
      color: { enum: ["red", "green", "blue", 7, null] },
      kind: { const: "fixed" },
      level: { type: "integer", exclusiveMinimum: -5, exclusiveMaximum: 5 },
    },
    required: ["color", "kind", "level"],
  },
  nested_arrays: {
    type: "object",
    properties: {
      items: {
        type: "array",
        minItems: 1,
        maxItems: 3,
        items: {
          type: "object",
          properties: { id: { type: "integer" }, tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 2 } },
          required: ["id"],
        },
      },
    },
    required: ["items"],
  },
  recursive: {
    $defs: {
      node: {
        type: "object",
        properties: { v: { type: "integer", minimum: 0, maximum: 9 }, kids: { type: "array", maxItems: 2, items: { $ref: "#/$defs/node" } } },
        required: ["v"],
        additionalProperties: false,
      },
    },
    $ref: "#/$defs/node",
  },
  formats_anyof: {
    type: "object",
    properties: {
      when: { type: "string", format: "date" },
      id: { type: "string", format: "uuid" },
      mail: { type: "string", format: "email" },
      code: { type: "string", pattern: "^[A-Z]{2}-[0-9]{2,4}$" },
      either: { anyOf: [{ type: "integer" }, { type: "string", maxLength: 4 }, { type: "null" }] },
      maybe: { type: ["string", "null"], maxLength: 5 },
    },
    required: ["when", "id", "mail", "code", "either", "maybe"],
  },
  any_json: { type: "object", additionalProperties: true },
};

// samples per schema and model; fewer in the ASan build (CI time), where the point is memory
// errors rather than the spread of outputs
const SAMPLES = process.env.PL_SANITIZE === "ON" ? 6 : 24;

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

let servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

async function post(base, path, body) {
  const r = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

// n samples of one schema; returns [stopped, total]
async function sampleSchema(base, name, schema, n, seed) {
  const validate = ajv.compile(schema);
  const r = await post(base, "/v1/completions", {
    prompt: "{", max_tokens: 400, temperature: 1, n, seed, guided_json: schema,
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  let stopped = 0;
  for (const c of r.body.choices) {
    if (c.finish_reason === "length") continue; // max_tokens cut it: allowed to be a prefix
    assert.equal(c.finish_reason, "stop");
    stopped++;
    let v;
    try {
      v = JSON.parse(c.text);
    } catch (e) {
      assert.fail(`${name}: output is not JSON: ${JSON.stringify(c.text)}`);
    }
    assert.ok(validate(v), `${name}: ${JSON.stringify(c.text)} fails the schema: ${ajv.errorsText(validate.errors)}`);
  }
  return [stopped, r.body.choices.length];
}

for (const [label, model] of [["bundled", BUNDLED], ["random", RANDOM]]) {
  test(`schemas: ajv validates temperature-1 samples (${label} model)`, async () => {
    if (label === "random") {
      const g = runPl(["model-gen", "-o", RANDOM, "--n-embd", "128", "--n-layer", "2", "--n-head", "4",
        "--n-head-kv", "2", "--n-ff", "256", "--n-ctx", "1024", "--seed", "7", "-q"]);
      assert.equal(g.status, 0, g.stderr);
    }
    const args = ["--kv-cache-memory", "256MiB", "--max-model-len", "1024"];
    if (label === "random") args.push("--chat-template", TEMPLATE);
    const s = await startServer({ model, args });
    servers.push(s);
    let stopped = 0, total = 0;
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const [a, b] = await sampleSchema(s.url, name, schema, SAMPLES, 11);
      stopped += a;
      total += b;
    }
    // most samples must finish: a grammar that never lets the output end would fail this
    assert.ok(stopped >= total / 2, `${stopped} of ${total} samples stopped`);
    console.log(`${label}: ${stopped} of ${total} samples complete and valid`);
  });
}

test("speculative decoding on: constrained samples still validate (they make no proposals)", async () => {
  const s = await startServer({ model: BUNDLED, args: ["--speculative", "ngram", "--ngram-min", "1", "--kv-cache-memory", "256MiB"] });
  servers.push(s);
  let stopped = 0, total = 0;
  for (const name of ["flat", "nested_arrays"]) {
    const [a, b] = await sampleSchema(s.url, name, SCHEMAS[name], SAMPLES, 5);
    stopped += a;
    total += b;
  }
  assert.ok(stopped >= total / 2, `${stopped} of ${total} samples stopped`);
});

test("regex, choice, GBNF and json_object constraints; errors name the field", async () => {
  const s = servers[0] ?? (await startServer({ model: BUNDLED }));
  if (!servers.includes(s)) servers.push(s);
  const base = s.url;
  let r = await post(base, "/v1/completions", { prompt: "The", max_tokens: 40, n: 16, seed: 3, guided_regex: "(ab|c)[0-9]{2,3}x?" });
  assert.equal(r.status, 200);
  for (const c of r.body.choices) if (c.finish_reason === "stop") assert.match(c.text, /^(ab|c)[0-9]{2,3}x?$/);
  r = await post(base, "/v1/completions", { prompt: "The", max_tokens: 40, n: 16, seed: 3, guided_choice: ["yes", "no", "maybe so"] });
  for (const c of r.body.choices) assert.ok(["yes", "no", "maybe so"].includes(c.text), c.text);
  r = await post(base, "/v1/completions", { prompt: "The", max_tokens: 40, n: 8, grammar: 'root ::= "x" [0-9]+ ("," [0-9]+)* "."' });
  for (const c of r.body.choices) if (c.finish_reason === "stop") assert.match(c.text, /^x[0-9]+(,[0-9]+)*\.$/);
  r = await post(base, "/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 300, n: 8, seed: 5, response_format: { type: "json_object" } });
  assert.equal(r.status, 200);
  for (const c of r.body.choices)
    if (c.finish_reason === "stop") assert.equal(typeof JSON.parse(c.message.content), "object");
  // streamed: the concatenated deltas are the same constrained text
  const sr = await fetch(base + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "The", max_tokens: 40, seed: 9, stream: true, guided_regex: "[a-z]{3,8}" }) });
  const txt = await sr.text();
  let out = "";
  for (const line of txt.split("\n")) if (line.startsWith("data: {")) out += JSON.parse(line.slice(6)).choices[0].text;
  assert.match(out, /^[a-z]{3,8}$/);

  r = await post(base, "/v1/completions", { prompt: "a", guided_json: { type: "object", properties: { a: { type: "string", contentEncoding: "base64" } } } });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, "guided_json");
  assert.match(r.body.error.message, /contentEncoding/);
  r = await post(base, "/v1/completions", { prompt: "a", grammar: 'root ::= foo' });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /undefined rule 'foo'/);
  r = await post(base, "/v1/completions", { prompt: "a", guided_regex: "(a)\\1" });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /backreference/);
  r = await post(base, "/v1/completions", { prompt: "a", guided_regex: "a", guided_choice: ["b"] });
  assert.equal(r.status, 400);
  // still serving
  r = await post(base, "/v1/completions", { prompt: "a", max_tokens: 2 });
  assert.equal(r.status, 200);
});

test("openai client: zodResponseFormat + chat.completions.parse", async () => {
  const s = servers[0] ?? (await startServer({ model: BUNDLED }));
  if (!servers.includes(s)) servers.push(s);
  const client = new OpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const Person = z.object({ name: z.string().max(10), age: z.number().int(), pets: z.array(z.enum(["cat", "dog"])).max(2), nick: z.string().max(5).nullable() });
  const model = (await client.models.list()).data[0].id;
  let parsed = 0;
  for (let seed = 1; seed <= 6; seed++) {
    let c;
    try {
      c = await client.chat.completions.parse({
        model, messages: [{ role: "user", content: "a person" }], max_tokens: 300, seed, temperature: 1,
        response_format: zodResponseFormat(Person, "person"),
      });
    } catch (e) {
      if (e?.constructor?.name === "LengthFinishReasonError") continue; // cut by max_tokens
      throw e;
    }
    const p = c.choices[0].message.parsed;
    assert.ok(Person.safeParse(p).success, JSON.stringify(p));
    parsed++;
  }
  assert.ok(parsed >= 3, `only ${parsed} of 6 finished`);
});

test("openai client: forced tool call on a random-weight model, then the tool result round trip", async () => {
  const s = servers[1];
  const client = new OpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const model = (await client.models.list()).data[0].id;
  const params = { type: "object", properties: { city: { type: "string", maxLength: 8 }, unit: { enum: ["c", "f"] } }, required: ["city", "unit"], additionalProperties: false };
  const tools = [{ type: "function", function: { name: "get_weather", parameters: params } }, { type: "function", function: { name: "noop" } }];
  const validate = ajv.compile(params);
  let calls = 0;
  for (const tool_choice of ["required", { type: "function", function: { name: "get_weather" } }]) {
    for (let seed = 1; seed <= 4; seed++) {
      const messages = [{ role: "user", content: "weather in Paris?" }];
      const r = await client.chat.completions.create({ model, messages, tools, tool_choice, parallel_tool_calls: false, max_tokens: 300, seed });
      const ch = r.choices[0];
      if (ch.finish_reason === "length") continue;
      assert.equal(ch.finish_reason, "tool_calls", JSON.stringify(ch));
      assert.equal(ch.message.tool_calls.length, 1);
      const call = ch.message.tool_calls[0];
      assert.equal(call.type, "function");
      if (typeof tool_choice === "object") assert.equal(call.function.name, "get_weather");
      if (call.function.name === "get_weather") assert.ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);
      calls++;
      // the call and its result go back through the chat template for the next turn
      messages.push(ch.message, { role: "tool", tool_call_id: call.id, content: "{\"temp\": 21}" });
      const r2 = await client.chat.completions.create({ model, messages, tools, tool_choice: "none", max_tokens: 8, seed });
      assert.ok(["stop", "length"].includes(r2.choices[0].finish_reason));
      assert.equal(r2.choices[0].message.tool_calls, undefined);
    }
  }
  assert.ok(calls >= 4, `only ${calls} of 8 forced calls finished`);
});

test("openai client: streamed tool calls (incremental tool_calls deltas) match the whole response", async () => {
  const s = servers[1];
  const client = new OpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const model = (await client.models.list()).data[0].id;
  const params = { type: "object", properties: { city: { type: "string", maxLength: 8 }, days: { type: "integer", minimum: 1, maximum: 9 } }, required: ["city", "days"], additionalProperties: false };
  const tools = [{ type: "function", function: { name: "forecast", parameters: params } }, { type: "function", function: { name: "noop" } }];
  const strip = (calls) => (calls ?? []).map((c) => [c.type, c.function.name, c.function.arguments]);
  let compared = 0, multi = 0;
  for (const parallel_tool_calls of [false, true]) {
    for (let seed = 1; seed <= 4; seed++) {
      const body = { model, messages: [{ role: "user", content: "forecast for Oslo" }], tools, tool_choice: "required", parallel_tool_calls, max_tokens: 300, seed, temperature: 1 };
      const whole = (await client.chat.completions.create(body)).choices[0];
      // raw chunks: each call arrives as a delta with its index, id, type, name and arguments
      const chunks = [];
      for await (const c of await client.chat.completions.create({ ...body, stream: true })) chunks.push(c);
      const seen = new Set();
      for (const c of chunks)
        for (const d of c.choices[0]?.delta?.tool_calls ?? []) {
          assert.equal(typeof d.index, "number");
          if (!seen.has(d.index)) {
            assert.equal(d.index, seen.size, "indices come in order");
            assert.ok(d.id && d.type === "function" && d.function?.name, JSON.stringify(d));
            seen.add(d.index);
          }
        }
      // the client's own accumulator builds the same message as the non-streamed response
      const streamed = (await client.chat.completions.stream(body).finalChatCompletion()).choices[0];
      assert.equal(streamed.finish_reason, whole.finish_reason);
      assert.deepEqual(strip(streamed.message.tool_calls), strip(whole.message.tool_calls));
      assert.equal(seen.size, (whole.message.tool_calls ?? []).length);
      if (whole.finish_reason === "tool_calls") {
        compared++;
        if (whole.message.tool_calls.length > 1) multi++;
        for (const c of whole.message.tool_calls)
          if (c.function.name === "forecast") assert.ok(ajv.validate(params, JSON.parse(c.function.arguments)), c.function.arguments);
      }
    }
  }
  assert.ok(compared >= 4, `only ${compared} of 8 forced calls finished`);
  // tool_choice auto with a GBNF grammar that makes the model write text and two calls: the
  // stream carries the text as content and the calls as deltas 0 and 1
  const grammar = `root ::= "Checking.\\n<tool_call>\\n{\\"name\\": \\"forecast\\", \\"arguments\\": {\\"city\\": \\"" [a-z]{1,6} "\\", \\"days\\": " [1-9] "}}\\n</tool_call>\\n<tool_call>\\n{\\"name\\": \\"noop\\", \\"arguments\\": {}}\\n</tool_call>"`;
  for (let seed = 1; seed <= 3; seed++) {
    const body = { model, messages: [{ role: "user", content: "forecast" }], tools, tool_choice: "auto", grammar, max_tokens: 200, seed, temperature: 1 };
    const whole = (await client.chat.completions.create(body)).choices[0];
    assert.equal(whole.finish_reason, "tool_calls", JSON.stringify(whole));
    assert.equal(whole.message.content, "Checking.");
    assert.deepEqual(whole.message.tool_calls.map((c) => c.function.name), ["forecast", "noop"]);
    const streamed = (await client.chat.completions.stream(body).finalChatCompletion()).choices[0];
    assert.equal(streamed.finish_reason, "tool_calls");
    assert.equal(streamed.message.content, "Checking.");
    assert.deepEqual(strip(streamed.message.tool_calls), strip(whole.message.tool_calls));
    multi++;
  }
  console.log(`streamed tool calls: ${compared} compared, ${multi} with two calls`);
});

test("openai client: a forced streamed tool call arrives incrementally (name first, then argument fragments)", async () => {
  const s = servers[1];
  const client = new OpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const model = (await client.models.list()).data[0].id;
  const params = { type: "object", properties: { city: { type: "string", minLength: 2, maxLength: 8 }, days: { type: "integer", minimum: 1, maximum: 9 }, tags: { type: "array", items: { enum: ["sun", "rain"] }, maxItems: 3 } }, required: ["city", "days", "tags"], additionalProperties: false };
  const tools = [{ type: "function", function: { name: "forecast", parameters: params } }, { type: "function", function: { name: "noop", parameters: { type: "object", properties: {}, additionalProperties: false } } }];
  const validate = ajv.compile(params);
  let checked = 0;
  for (const tool_choice of ["required", { type: "function", function: { name: "forecast" } }]) {
    for (let seed = 1; seed <= 4; seed++) {
      const body = { model, messages: [{ role: "user", content: "forecast for Oslo" }], tools, tool_choice, parallel_tool_calls: true, max_tokens: 300, seed, temperature: 1 };
      // accumulate the deltas as the openai client's docs do: a new index starts a call, every
      // delta appends its arguments fragment
      const acc = [], deltas = [];
      let finish = null;
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        const ch = chunk.choices[0];
        if (!ch) continue;
        if (ch.finish_reason) finish = ch.finish_reason;
        for (const tc of ch.delta?.tool_calls ?? []) {
          if (!acc[tc.index]) {
            // a call's first delta: index in order, id, type, name (and arguments, maybe "")
            assert.equal(tc.index, acc.length, "indices come in order");
            assert.ok(tc.id && tc.type === "function" && tc.function?.name && typeof tc.function.arguments === "string", JSON.stringify(tc));
            acc[tc.index] = { id: tc.id, type: tc.type, function: { name: tc.function.name, arguments: "" } };
            deltas[tc.index] = 0;
          } else {
            // later ones: the index and the next fragment only
            assert.equal(tc.index, acc.length - 1, "fragments belong to the last call");
            assert.equal(tc.id, undefined, JSON.stringify(tc));
            assert.equal(tc.function?.name, undefined, JSON.stringify(tc));
          }
          acc[tc.index].function.arguments += tc.function?.arguments ?? "";
          deltas[tc.index]++;
        }
      }
      if (finish === "length") continue;
      assert.equal(finish, "tool_calls");
      assert.ok(acc.length >= 1);
      const whole = (await client.chat.completions.create(body)).choices[0];
      assert.equal(whole.finish_reason, "tool_calls");
      // the fragments concatenate to exactly the non-streamed arguments (the same seed)
      assert.deepEqual(acc.map((c) => [c.function.name, c.function.arguments]), whole.message.tool_calls.map((c) => [c.function.name, c.function.arguments]));
      for (let i = 0; i < acc.length; i++) {
        const c = acc[i];
        if (typeof tool_choice === "object") assert.equal(c.function.name, "forecast");
        const args = JSON.parse(c.function.arguments);
        if (c.function.name === "forecast") assert.ok(validate(args), `${c.function.arguments}: ${ajv.errorsText(validate.errors)}`);
        else assert.deepEqual(args, {});
        // incremental: the name went out before the arguments were complete
        if (c.function.arguments.length > 4) assert.ok(deltas[i] >= 2, `call ${i} came in ${deltas[i]} delta(s): ${c.function.arguments}`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 4, `only ${checked} streamed calls finished`);
  console.log(`incremental streamed tool calls: ${checked} checked`);
});
