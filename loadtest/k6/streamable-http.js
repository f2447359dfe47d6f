// Streamable HTTP: each virtual user initializes one MCP session, then calls a
// tool in a loop. TOOL (default fixture-echo) and ARGS (JSON) pick the call;
// MCP_PATH picks the endpoint (default /mcp; e.g. /servers/all/mcp).
import http from "k6/http";
import { check } from "k6";
import { BASE_URL, headers, options as opts, rpc } from "./lib.js";

export const options = opts();
const PATH = __ENV.MCP_PATH || "/mcp";
const TOOL = __ENV.TOOL || "fixture-echo";
const ARGS = JSON.parse(__ENV.ARGS || '{"message": "k6"}');
let session = null;

function init() {
  const res = http.post(`${BASE_URL}${PATH}`, rpc("initialize", {
    protocolVersion: "2025-11-25",
    capabilities: {},
    clientInfo: { name: "k6", version: "1" },
  }), { headers });
  check(res, { "initialized": (r) => r.status === 200 && !!r.headers["Mcp-Session-Id"] });
  session = res.headers["Mcp-Session-Id"];
  http.post(`${BASE_URL}${PATH}`, JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
    { headers: { ...headers, "Mcp-Session-Id": session } });
}

export default function () {
  if (!session) init();
  const res = http.post(`${BASE_URL}${PATH}`, rpc("tools/call", { name: TOOL, arguments: ARGS }),
    { headers: { ...headers, "Mcp-Session-Id": session } });
  check(res, {
    "status 200": (r) => r.status === 200,
    "no JSON-RPC error": (r) => !r.body.includes('"error"'),
  });
}
