// Summarizes a conformance run directory: one line per scenario
// ("PASS|FAIL scenario ok/total"), then "N passed, M failed" by scenario.
// Usage: node conformance-summary.mjs OUTPUT_DIR
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
let passed = 0;
let failed = 0;
for (const entry of readdirSync(dir).sort()) {
  const m = entry.match(/^server-(.+)-\d{4}-\d\d-\d\dT/);
  if (!m) continue;
  let checks;
  try {
    checks = JSON.parse(readFileSync(join(dir, entry, "checks.json"), "utf8"));
  } catch {
    continue;
  }
  const bad = checks.filter((c) => c.status === "FAILURE");
  const ok = checks.filter((c) => c.status === "SUCCESS").length;
  if (bad.length === 0) passed++;
  else failed++;
  console.log(`${bad.length ? "FAIL" : "PASS"}  ${m[1].padEnd(32)} ${ok}/${checks.length}${bad.length ? "  " + bad.map((c) => c.id).join(",") : ""}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
