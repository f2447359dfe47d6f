#!/usr/bin/env python3
"""A real MCP client (the official Python SDK) driving mcpgate.

    py_client.py URL --token T --tool NAME --args JSON --expect TEXT
                 [--resource URI] [--prompt NAME --prompt-args JSON] [--mode auto|legacy]
                 [--progress-tool NAME] [--sampling-tool NAME] [--elicitation-tool NAME]

Connects over Streamable HTTP with a bearer token, then: tools/list (the tool
is listed), tools/call (no error, the text contains --expect),
resources/read, prompts/get; with the optional tools also a call that
reports progress (at least one notification reaches the callback), one that
asks the client's model (sampling; the answer "sampled by python" must come
back in the result) and one that asks the user (elicitation). Prints one
PASS/FAIL line per step and "N passed, M failed"; exits non-zero on any
failure.
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client


async def sample(_context, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="sampled by python"), model="e2e-model"
    )


async def elicit(_context, params):
    return types.ElicitResult(action="accept", content={"username": "py", "email": "py@example.com"})


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
        async with Client(
            streamable_http_client(a.url, http_client=http),
            mode=a.mode,
            sampling_callback=sample if a.sampling_tool else None,
            elicitation_callback=elicit if a.elicitation_tool else None,
        ) as c:
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
            if a.progress_tool:
                seen = []

                async def progress(p, total, message):
                    seen.append(p)

                r = await c.call_tool(a.progress_tool, {}, progress_callback=progress)
                rec("progress", bool(seen) and not get(r, "is_error", "isError", default=False), f"{len(seen)} notifications")
            if a.sampling_tool:
                r = await c.call_tool(a.sampling_tool, {"prompt": "2+2?"})
                text = " ".join(str(get(x, "text") or "") for x in (get(r, "content") or []))
                rec("sampling", "sampled by python" in text, text)
            if a.elicitation_tool:
                r = await c.call_tool(a.elicitation_tool, {"message": "who?"})
                text = " ".join(str(get(x, "text") or "") for x in (get(r, "content") or []))
                rec("elicitation", "py@example.com" in text, text)
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
    ap.add_argument("--progress-tool")
    ap.add_argument("--sampling-tool")
    ap.add_argument("--elicitation-tool")
    sys.exit(asyncio.run(main(ap.parse_args())))
