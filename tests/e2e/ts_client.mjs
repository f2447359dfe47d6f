// A real MCP client (the official TypeScript SDK) driving mcpgate.
//
//   node ts_client.mjs URL TOKEN TOOL ARGS_JSON EXPECT [RESOURCE_URI] [PROMPT PROMPT_ARGS_JSON]
//   (optional, by environment: PROGRESS_TOOL, SAMPLING_TOOL, ELICITATION_TOOL)
//
// Same steps as py_client.py, then DELETE of the session; last line
// "N passed, M failed".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const { PROGRESS_TOOL, SAMPLING_TOOL, ELICITATION_TOOL } = process.env;

const [url, token, tool, args, expect, resource, prompt, promptArgs] = process.argv.slice(2);
const results = [];
const rec = (step, ok, info) => {
  results.push(ok);
  console.log(`${ok ? "PASS" : "FAIL"} ${step.padEnd(15)} ${String(info).slice(0, 200)}`);
};

try {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const capabilities = {};
  if (SAMPLING_TOOL) capabilities.sampling = {};
  if (ELICITATION_TOOL) capabilities.elicitation = {};
  const client = new Client({ name: "mcpgate-e2e", version: "1.0.0" }, { capabilities });
  if (SAMPLING_TOOL) {
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: "assistant", content: { type: "text", text: "sampled by typescript" }, model: "e2e-model",
    }));
  }
  if (ELICITATION_TOOL) {
    client.setRequestHandler(ElicitRequestSchema, async () => ({
      action: "accept", content: { username: "ts", email: "ts@example.com" },
    }));
  }
  await client.connect(transport);
  rec("initialize", true, `server=${client.getServerVersion()?.name}`);
  const { tools } = await client.listTools();
  rec("tools/list", tools.some((t) => t.name === tool), `${tools.length} tools`);
  const r = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  const text = (r.content || []).map((c) => c.text || "").join(" ");
  rec("tools/call", !r.isError && text.includes(expect), text);
  if (resource) {
    const rr = await client.readResource({ uri: resource });
    rec("resources/read", rr.contents?.[0]?.uri === resource, `${rr.contents?.length} contents`);
  }
  if (prompt) {
    const p = await client.getPrompt({ name: prompt, arguments: JSON.parse(promptArgs || "{}") });
    rec("prompts/get", p.messages?.length > 0, `${p.messages?.length} messages`);
  }
  const textOf = (r) => (r.content || []).map((c) => c.text || "").join(" ");
  if (PROGRESS_TOOL) {
    let seen = 0;
    const r = await client.callTool({ name: PROGRESS_TOOL, arguments: {} }, undefined, { onprogress: () => { seen += 1; } });
    rec("progress", seen > 0 && !r.isError, `${seen} notifications`);
  }
  if (SAMPLING_TOOL) {
    const r = await client.callTool({ name: SAMPLING_TOOL, arguments: { prompt: "2+2?" } });
    rec("sampling", textOf(r).includes("sampled by typescript"), textOf(r));
  }
  if (ELICITATION_TOOL) {
    const r = await client.callTool({ name: ELICITATION_TOOL, arguments: { message: "who?" } });
    rec("elicitation", textOf(r).includes("ts@example.com"), textOf(r));
  }
  if (transport.sessionId) {
    await transport.terminateSession();
    rec("DELETE", transport.sessionId === undefined, "session ended");
  }
  await client.close();
} catch (e) {
  rec("session", false, `${e?.name}: ${e?.message}`);
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
