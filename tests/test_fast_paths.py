"""The fast paths: switched on by the application factory, and loud when a library they lean on changes.

Each one relies on something a library does not promise (jinja2's render internals, uvicorn's
protocol class, ``requests.api.request``); pyproject.toml bounds those libraries, and these tests
fail with a clear message when an upgrade inside the bounds breaks the assumption anyway
(docs/performance.md, "Fast paths").
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import jinja2
import pytest
import requests
import requests.api

from receiver.delivery import keepalive
from receiver.delivery.notifier import AppriseNotifier
from receiver.http.app import create_app
from receiver.http.protocol import MAX_HEAD_BYTES, BoundedHttpToolsProtocol
from receiver.rules.template import RuleTemplate, compile_template
from receiver.settings import Settings


@pytest.fixture
def unpatched_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """``requests`` as it is without keepalive (put back as it was afterwards)."""
    original = requests.Session().request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        return original(method=method, url=url, **kwargs)

    monkeypatch.setattr(requests.api, "request", request)
    monkeypatch.setattr(requests, "request", request)


@pytest.mark.usefixtures("unpatched_requests")
def test_keepalive_is_installed_by_the_app_factory_not_by_a_notifier(tmp_path: Any) -> None:
    """Building a notifier patches nothing; building the application installs keep-alive."""
    AppriseNotifier()
    assert not keepalive.installed()
    create_app(Settings(database_url=f"sqlite:///{tmp_path}/r.db", webhook_secret="s" * 32))
    assert keepalive.installed()


# --- jinja2: RuleTemplate.render rebuilds Template.render around a flattened globals dict ----------

_TEMPLATES = [
    "{{ process }} failed",
    "{% for x in items %}{{ loop.index }}:{{ x }} {% endfor %}",
    "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
    "{{ process | upper }} {{ process[:3] }} {{ items | join(',') }}",
]


@pytest.mark.parametrize("source", _TEMPLATES)
def test_rule_templates_render_as_jinja2_renders_them(source: str) -> None:
    """The fast render gives what jinja2's own ``Template.render`` gives, its globals included."""
    fast = compile_template(source, "text")
    assert isinstance(fast, RuleTemplate)
    assert type(fast).render is not jinja2.Template.render, "RuleTemplate no longer overrides render"
    context = {"process": "InvoiceProcessing", "items": ["a", "b"]}
    assert jinja2.Template.render(fast, **context) == fast.render(**context)
    assert jinja2.Template.render(fast, context) == fast.render(context)


def test_rule_template_errors_carry_the_template_line() -> None:
    """An error inside a template is re-raised by jinja2's handler, as from ``Template.render``."""
    fast = compile_template("line one\n{{ 1 // zero }}", "text")
    with pytest.raises(ZeroDivisionError) as caught:
        fast.render(zero=0)
    assert any(entry.lineno + 1 == 2 and "<template>" in str(entry.path) for entry in caught.traceback)


def test_jinja2_render_internals_are_the_ones_rule_templates_rebuild() -> None:
    """jinja2's ``Template.render`` still builds a context and concatenates ``root_render_func``."""
    source = inspect.getsource(jinja2.Template.render)
    for piece in ("self.new_context(", "self.root_render_func(ctx)", "self.environment.concat(", "handle_exception"):
        assert piece in source, (
            f"jinja2 {jinja2.__version__}: Template.render no longer contains {piece!r}; "
            "receiver.rules.template.RuleTemplate.render copies it and must be checked against the new version"
        )
    new_context = inspect.getsource(jinja2.Template.new_context)
    for piece in ("new_context(", "self.globals"):
        assert piece in new_context, (
            f"jinja2 {jinja2.__version__}: Template.new_context changed; check RuleTemplate.render"
        )
    env = compile_template("{{ process }}", "text").environment
    for name in ("context_class", "concat", "handle_exception"):
        assert hasattr(env, name), f"jinja2 {jinja2.__version__}: Environment.{name} is gone; check RuleTemplate.render"


# --- uvicorn: BoundedHttpToolsProtocol subclasses its httptools protocol ------------------------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name, default)


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"21")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"status":"accepted"}'})


async def _connection(
    app: Any = _answer, *, head_timeout: float = 10.0, **config_options: Any
) -> tuple[BoundedHttpToolsProtocol, _Transport]:
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(app=app, http=BoundedHttpToolsProtocol, log_config=None, lifespan="off", **config_options)
    config.load()
    try:
        protocol = BoundedHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}, head_timeout=head_timeout
        )
    except TypeError as exc:
        pytest.fail(
            f"uvicorn {uvicorn.__version__}: HttpToolsProtocol's constructor changed ({exc}); "
            "check receiver/http/protocol.py"
        )
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _until(condition: Any) -> None:
    for _ in range(200):  # bounded: 2 s
        if condition():
            return
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_uvicorn_answers_in_one_write_through_the_bounded_protocol() -> None:
    """The answer's head and body leave in one write: uvicorn still sends through ``cycle.transport``."""
    protocol, transport = await _connection()
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    await _until(lambda: transport.writes)
    assert 1 == len(transport.writes), f"uvicorn's cycle wrote {len(transport.writes)} times: {transport.writes!r}"
    (answer,) = transport.writes
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert answer.endswith(b'{"status":"accepted"}')
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_uvicorn_head_over_the_bound_gets_431() -> None:
    """The protocol still sees each read of a head (``data_received``) and refuses an oversized one."""
    protocol, transport = await _connection()
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\n")
    filler = b"x-filler: " + b"a" * 1000 + b"\r\n"
    for _ in range(MAX_HEAD_BYTES // len(filler) + 2):
        protocol.data_received(filler)
        if transport.writes:
            break
    assert transport.writes, "a head over MAX_HEAD_BYTES was not refused: check receiver/http/protocol.py"
    assert transport.writes[0].startswith(b"HTTP/1.1 431 ")
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_uvicorn_head_over_the_bound_in_one_read_gets_431() -> None:
    """A whole 100 KB head in one read (asyncio reads up to 256 KiB) is refused too, and never reaches the app."""
    protocol, transport = await _connection()
    filler = b"".join(b"x-filler-%d: " % n + b"a" * 1000 + b"\r\n" for n in range(100))
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\n" + filler + b"content-length: 2\r\n\r\n{}")
    await _until(lambda: transport.writes)
    assert transport.writes, "a 100 KB head in one read was not refused: check receiver/http/protocol.py"
    assert transport.writes[0].startswith(b"HTTP/1.1 431 ")
    assert not any(b"202" in w.split(b"\r\n", 1)[0] for w in transport.writes)
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_uvicorn_head_under_the_bound_in_one_read_is_served() -> None:
    """A 40 KB head in one read is under the bound: answered as usual."""
    protocol, transport = await _connection()
    filler = b"".join(b"x-filler-%d: " % n + b"a" * 1000 + b"\r\n" for n in range(40))
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\n" + filler + b"content-length: 2\r\n\r\n{}")
    await _until(lambda: transport.writes)
    assert transport.writes[0].startswith(b"HTTP/1.1 202 ")
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_head_not_finished_in_time_gets_408_and_the_connection_closes() -> None:
    """A head sent in part and never finished no longer holds its connection (and a concurrency slot) for ever."""
    protocol, transport = await _connection(head_timeout=0.2)
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\n")
    await _until(lambda: transport.writes)
    assert transport.writes, "a head never finished was never answered"
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head
    assert "head_timeout" == json.loads(body)["error"]
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_silent_connection_is_closed_after_the_keep_alive_time() -> None:
    """A connection opened and never used is closed like an idle keep-alive one, without an answer."""
    protocol, transport = await _connection(head_timeout=5.0, timeout_keep_alive=0.2)
    await _until(lambda: transport.closing)
    assert transport.closing, "a connection that sent nothing was held open"
    assert [] == transport.writes
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_slow_answer_is_not_cut_by_the_head_deadline() -> None:
    """The deadline is the client's: while the app takes its time, the connection stays and the answer goes out."""
    release = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await _answer(scope, receive, send)

    protocol, transport = await _connection(slow, head_timeout=0.1)
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    await asyncio.sleep(0.3)
    assert (False, []) == (transport.closing, transport.writes)
    release.set()
    await _until(lambda: transport.writes)
    assert transport.writes[0].startswith(b"HTTP/1.1 202 ")
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_over_the_concurrency_limit_the_503_is_the_json_error() -> None:
    """uvicorn's own 503 is plain text; Orchestrator and operators get the JSON error body every refusal has."""
    protocol, transport = await _connection(limit_concurrency=1)
    protocol.data_received(b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    await _until(lambda: transport.writes)
    head, _, body = b"".join(transport.writes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"content-type: application/json" in head
    assert b"retry-after: 1" in head
    assert {"error": "over_capacity", "detail": "too many requests in progress; retry in a moment"} == json.loads(body)
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_head_request_is_answered_on_a_kept_alive_connection() -> None:
    """HEAD has no body to write: an answer's head held for the body write never left (HEAD /healthz hung)."""
    protocol, transport = await _connection()
    protocol.data_received(b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    await _until(lambda: transport.writes)
    assert transport.writes, "the answer to a HEAD request was never written"
    assert transport.writes[0].startswith(b"HTTP/1.1 202 ")
    assert not transport.closing
    protocol.connection_lost(None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="not-http"),
        pytest.param(
            b"POST /webhooks/uipath HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            id="length-and-chunked",
        ),
    ],
)
async def test_a_request_that_is_not_http_gets_the_json_400(request_bytes: bytes) -> None:
    """uvicorn's own 400 is plain text; it carries the JSON error body too, and the connection closes."""
    protocol, transport = await _connection()
    protocol.data_received(request_bytes)
    await _until(lambda: transport.writes)
    head, _, body = b"".join(transport.writes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head
    assert "invalid_http" == json.loads(body)["error"]
    assert transport.closing
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_connection_answered_before_its_body_ended_does_not_stay_open_for_ever() -> None:
    """An answer sent before the body was read (a refusal), then the body's rest and silence: the connection closes.

    The rest of the body disarmed uvicorn's keep-alive timer, armed by the answer, and nothing armed it again.
    """

    async def early(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    protocol, transport = await _connection(early, head_timeout=0.2, timeout_keep_alive=5)
    protocol.data_received(b"POST /logs/uipath HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n{")
    await _until(lambda: transport.writes)
    protocol.data_received(b"}  ")
    await _until(lambda: transport.closing)
    assert transport.closing, "a connection answered early and then silent was held open"
    protocol.connection_lost(None)
