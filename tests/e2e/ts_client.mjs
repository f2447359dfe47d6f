// A real MCP client (the official TypeScript SDK) driving mcpgate.
//
//   node ts_client.mjs URL TOKEN TOOL ARGS_JSON EXPECT [RESOURCE_URI] [PROMPT PROMPT_ARGS_JSON]
//
// Same steps as py_client.py; last line "N passed, M failed".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, tool, args, expect, resource, prompt, promptArgs] = process.argv.slice(2);
const results = [];
const rec = (step, ok, info) => {
  results.push(ok);
  console.log(`${ok ? "PASS" : "FAIL"} ${step.padEnd(15)} ${String(info).slice(0, 200)}`);
};

try {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: "mcpgate-e2e", version: "1.0.0" });
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
  await client.close();
} catch (e) {
  rec("session", false, `${e?.name}: ${e?.message}`);
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
