"""The ingest baseline: a bare Starlette app that reads the body and answers 202.

Same route shape as the receiver's edge (``POST /webhooks/{source}``, a path parameter), same
uvicorn settings as ``receiver serve`` (one worker, uvicorn's default loop and HTTP
implementation, no access log, no server header), and a small JSON answer like the receiver's.
Run: ``python bench/bare_app.py --port PORT``.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from starlette.applications import Starlette  # noqa: TID251 - a benchmark baseline, not receiver code
from starlette.requests import Request  # noqa: TID251
from starlette.responses import JSONResponse, Response  # noqa: TID251
from starlette.routing import Route  # noqa: TID251


async def webhook(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"status": "accepted", "bytes": len(body)}, status_code=202)


app = Starlette(routes=[Route("/webhooks/{source}", webhook, methods=["POST"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # Exactly the arguments receiver.cli._serve passes.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
