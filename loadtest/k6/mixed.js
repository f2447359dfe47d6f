// A mixed profile: 80% reads (tools/list, REST lists), 15% tool calls, 5%
// writes (create then delete a REST tool). Writes invalidate caches, so this
// shows what reads cost while the registry changes.
import http from "k6/http";
import { check } from "k6";
import { BASE_URL, headers, options as opts, rpc } from "./lib.js";

export const options = opts();
const TOOL = __ENV.TOOL || "fixture-echo";

export default function () {
  const dice = Math.random();
  if (dice < 0.4) {
    check(http.post(`${BASE_URL}/rpc`, rpc("tools/list"), { headers, tags: { name: "tools/list" } }), { "tools/list 200": (r) => r.status === 200 });
  } else if (dice < 0.8) {
    check(http.get(`${BASE_URL}/v1/tools`, { headers, tags: { name: "GET /v1/tools" } }), { "list 200": (r) => r.status === 200 });
  } else if (dice < 0.95) {
    const res = http.post(`${BASE_URL}/rpc`, rpc("tools/call", { name: TOOL, arguments: { message: "k6" } }), { headers, tags: { name: "tools/call" } });
    check(res, { "call 200": (r) => r.status === 200 });
  } else {
    const name = `k6_${__VU}_${__ITER}_${Date.now()}`;
    const created = http.post(`${BASE_URL}/v1/tools`, JSON.stringify({ name, url: "https://api.example.com/x", request_type: "GET" }), { headers, tags: { name: "POST /v1/tools" } });
    check(created, { "create 201": (r) => r.status === 201 });
    if (created.status === 201) {
      const del = http.del(`${BASE_URL}/v1/tools/${created.json("id")}`, null, { headers, tags: { name: "DELETE /v1/tools/{id}" } });
      check(del, { "delete 200": (r) => r.status === 200 });
    }
  }
}
