#!/usr/bin/env python3
"""A real MCP client (the official Python SDK) driving mcpgate.

    py_client.py URL --token T --tool NAME --args JSON --expect TEXT
                 [--resource URI] [--prompt NAME --prompt-args JSON] [--mode auto|legacy]

Connects over Streamable HTTP with a bearer token, then: tools/list (the tool
is listed), tools/call (no error, the text contains --expect),
resources/read, prompts/get. Prints one PASS/FAIL line per step and
"N passed, M failed"; exits non-zero on any failure.
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def get(obj, *names, default=None):
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


async def main(a) -> int:
    results = []

    def rec(step, ok, info):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {step:15} {str(info)[:200]}", flush=True)

    headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    try:
        async with Client(streamable_http_client(a.url, http_client=http), mode=a.mode) as c:
            rec("initialize", True, f"protocol={get(c, 'protocol_version')}")
            tools = get(await c.list_tools(), "tools") or []
            names = [get(t, "name") for t in tools]
            rec("tools/list", a.tool in names, f"{len(names)} tools")
            r = await c.call_tool(a.tool, json.loads(a.args))
            content = get(r, "content") or []
            text = " ".join(str(get(x, "text") or "") for x in content)
            rec("tools/call", not get(r, "is_error", "isError", default=False) and a.expect in text, text)
            if a.resource:
                rr = await c.read_resource(a.resource)
                contents = get(rr, "contents") or []
                rec("resources/read", bool(contents) and get(contents[0], "uri") == a.resource, f"{len(contents)} contents")
            if a.prompt:
                p = await c.get_prompt(a.prompt, json.loads(a.prompt_args))
                rec("prompts/get", bool(get(p, "messages")), f"{len(get(p, 'messages') or [])} messages")
    except BaseException as e:  # noqa: BLE001 - report any failure as a failed step
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        rec("session", False, f"{type(e).__name__}: {e}")
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--token")
    ap.add_argument("--tool", required=True)
    ap.add_argument("--args", default="{}")
    ap.add_argument("--expect", default="")
    ap.add_argument("--resource")
    ap.add_argument("--prompt")
    ap.add_argument("--prompt-args", default="{}")
    ap.add_argument("--mode", default="auto")
    sys.exit(asyncio.run(main(ap.parse_args())))
