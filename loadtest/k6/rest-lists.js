// Read-only REST collection lists, as a dashboard or a catalogue would poll them.
import http from "k6/http";
import { check } from "k6";
import { BASE_URL, headers, options as opts } from "./lib.js";

export const options = opts();
const PATHS = ["/v1/tools", "/v1/servers", "/v1/gateways", "/v1/resources", "/v1/prompts"];

export default function () {
  const path = PATHS[Math.floor(Math.random() * PATHS.length)];
  const res = http.get(`${BASE_URL}${path}`, { headers, tags: { name: path } });
  check(res, {
    "status 200": (r) => r.status === 200,
    "a JSON list": (r) => Array.isArray(r.json()),
  });
}
