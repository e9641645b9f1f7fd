"""Existing phones re-registering, in a process of their own, while the bench changes
agents: what a phone waits for Asterisk's answer, and nothing else.

Run by bench/backends.py (`python -m bench.phones`). Why a process: in the bench's own
process the answers queue behind the service's work (the applier, the API handlers,
the create transactions share its event loop and its GIL), which measured the bench,
not Asterisk. Real phones are never inside sipprov.

Protocol: a JSON object on stdin (host, port, first, n, password_format), then `ready`
on stdout once the first REGISTER was answered; REGISTERs go on until stdin closes;
then one JSON line on stdout: the latencies of the answered ones (seconds) and how
many failed.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

from sipprov.pbx.sipclient import SipClient


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    client = await SipClient.open(spec["host"], int(spec["port"]))
    rng = random.Random(7)
    first, n, fmt = int(spec["first"]), int(spec["n"]), str(spec["password_format"])
    ok: list[float] = []
    failed = 0
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    closed = asyncio.ensure_future(reader.read())
    announced = False
    try:
        while not closed.done():
            ext = first + rng.randrange(n)
            answer = await client.register(str(ext), fmt.format(ext=ext), expires=60)
            if answer.ok:
                ok.append(answer.elapsed_s)
            else:
                failed += 1
            if not announced:
                announced = True
                ok.clear()
                failed = 0
                print("ready", flush=True)
    finally:
        client.close()
    return {"latencies_s": ok, "failed": failed}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    result = asyncio.run(_run(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
