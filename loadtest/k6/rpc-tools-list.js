// POST /rpc tools/list with a bearer token: the reference's benchmark target.
//   k6 run -e BASE_URL=http://127.0.0.1:4444 -e TOKEN=... loadtest/k6/rpc-tools-list.js
import http from "k6/http";
import { check } from "k6";
import { BASE_URL, headers, options as opts, rpc } from "./lib.js";

export const options = opts();

export default function () {
  const res = http.post(`${BASE_URL}/rpc`, rpc("tools/list"), { headers });
  check(res, {
    "status 200": (r) => r.status === 200,
    "has tools": (r) => Array.isArray(r.json("result.tools")),
  });
}
