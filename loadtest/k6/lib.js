// Shared settings of the k6 scenarios. Every script reads:
//   BASE_URL  gateway URL (default http://127.0.0.1:4444; use :8080 for the edge)
//   TOKEN     bearer token (mcpgate token create --username admin@example.com --admin)
//   PROFILE   "ramp" (the reference's 16-minute ramp, default) or "short" (1 minute)
//   VUS       virtual users for the short profile (default 50)
//   DURATION  duration of the short profile (default 1m)
export const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:4444";
export const TOKEN = __ENV.TOKEN || "";

export const headers = {
  "Content-Type": "application/json",
  Accept: "application/json, text/event-stream",
  ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}),
};

// The reference's ramp: 2m->100, 5m@100, 2m->500, 5m@500, 2m->0.
const RAMP = [
  { duration: "2m", target: 100 },
  { duration: "5m", target: 100 },
  { duration: "2m", target: 500 },
  { duration: "5m", target: 500 },
  { duration: "2m", target: 0 },
];

export function options(extraThresholds = {}) {
  const base = {
    thresholds: {
      http_req_duration: ["p(99)<500"],
      http_req_failed: ["rate<0.01"],
      ...extraThresholds,
    },
  };
  if ((__ENV.PROFILE || "ramp") === "short") {
    return { ...base, vus: Number(__ENV.VUS || 50), duration: __ENV.DURATION || "1m" };
  }
  return { ...base, stages: RAMP };
}

let nextId = 1;
export function rpc(method, params) {
  return JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params: params || {} });
}
