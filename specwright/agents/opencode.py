"""OpenCode as an Executor: HTTP to an `opencode serve` server, events from its SSE stream.

Order matters (measured with opencode 1.18.33): subscribe to ``/event?directory=<workdir>``
first, then create the session, then ``prompt_async``; the run ends at ``session.idle`` (a few
part updates may trail it), fails on ``session.error``, and blocks forever on an unanswered
``permission.asked``, which is answered here by ``permission_policy``. Every exchange ends in
bounded time, however the server trickles (opencode_http.py): the run's ``timeout_s`` counts from
the start, bounds each call and the event stream, and a session left running on the way out is
aborted (with a short bound of its own). Every answer has a size bound (sse.py): an event past
``MAX_EVENT_BYTES`` is dropped with a warning and the run goes on, as a Claude Code line past its
limit is. The event mapping is the pure parser in opencode_events.py.

Config: ``url`` (``OPENCODE_URL`` wins), ``provider`` + ``model`` (or ``model: provider/model``),
``permission_policy`` (allow | always | reject; a write outside the work tree is refused with a
message whatever it says), ``timeout_s``; ``options.stream_log``: a file the
events are appended to (secrets redacted as in the store). The agent's environment is the server's: ``env`` does not apply.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from specwright.agents import sse
from specwright.agents.base import EventSink, Outcome, Task
from specwright.agents.executables import find_executable, version_of
from specwright.agents.opencode_events import (
    OpenCodeState,
    finish_parse,
    for_log,
    parse_event,
    permission_answer,
    usage_from_totals,
)
from specwright.agents.opencode_http import (
    ExchangeCancelled,
    ExchangeError,
    Link,
    make_client,
    seconds,
)
from specwright.agents.opencode_outcome import session_outcome
from specwright.agents.process import (
    BoundedQueue,
    Overlong,
    loads_json,
    open_stream_log,
    overlong_warning,
    slim,
)
from specwright.agents.sse import AnswerTooLarge, iter_events
from specwright.errors import AgentError, ConfigError
from specwright.model import ErrorEvent, StepEvent, Usage, UsageEvent
from specwright.redact import Redactor, without_password

if TYPE_CHECKING:
    import httpx

    from specwright.config import ExecutorConfig

__all__ = ["OpenCodeExecutor", "OpenCodeState", "find_opencode", "finish_parse", "parse_event"]

DEFAULT_URL = "http://localhost:4096"
# Each is also cut to what is left of the run's timeout_s (the waits on the way out, an abort
# and the totals, to timeout_s itself), so a run with a small timeout_s ends soon after it.
HTTP_TIMEOUT_S = 15.0  # a whole plain call, however its answer trickles
HEALTH_S = 5.0  # a whole health check
STATUS_S = 5.0  # asking whether the session is idle
ABORT_S = 5.0  # an abort, sent on the way out
TOTALS_S = 5.0  # the session's totals, read at the end
SSE_READ_TIMEOUT_S = 60.0  # the server sends a heartbeat every ~10 s
CONNECT_WAIT_S = 15.0  # for `server.connected` after subscribing
SETTLE_S = 0.3  # after session.idle, trailing part updates still arrive
ABORT_SETTLE_S = 10.0  # after an abort, for the session to go idle
POLL_IDLE_S = 15.0  # with no event for this long, ask the server whether the session is idle
POLICIES = {
    "allow": "once",
    "once": "once",
    "always": "always",
    "reject": "reject",
    "deny": "reject",
}

# --- the executor ---------------------------------------------------------------------------


def find_opencode(config_path: str | None = None, env: dict[str, str] | None = None) -> str:
    """The opencode executable: ``OPENCODE_PATH``, then the config's ``path``, then PATH."""
    return find_executable(
        "opencode",
        "OPENCODE_PATH",
        config_path,
        backend="opencode",
        install="npm install opencode-ai",
        env=env,
    )


class _Closed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


class OpenCodeExecutor:
    """Drives one prompt through an OpenCode server and streams its events."""

    backend = "opencode"

    def __init__(
        self, config: ExecutorConfig, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.transport = transport
        # for ``options.stream_log``: our secrets and the executor's, as the recorder redacts
        self._scrub = Redactor.from_env({**os.environ, **config.env})
        if config.permission_policy not in POLICIES:
            raise ConfigError(
                f"executor {config.name!r}: permission_policy {config.permission_policy!r}; "
                f"expected one of {', '.join(POLICIES)}"
            )

    @property
    def url(self) -> str:
        """The server's base URL: ``OPENCODE_URL``, else the executor's ``url``, else the
        default; a ConfigError naming where it came from unless it is an http(s) URL."""
        from specwright.config_check import is_http_url

        env = os.environ.get("OPENCODE_URL")
        url = (env or self.config.url or DEFAULT_URL).rstrip("/")
        if not is_http_url(url):
            where = "OPENCODE_URL" if env else f"executor {self.config.name!r}: url"
            got = f"{DEFAULT_URL}, got {without_password(url)!r}"
            raise ConfigError(f"{where}: expected an http(s) URL such as {got}")
        return url

    @property
    def shown_url(self) -> str:  # ``url`` as said and recorded: a password in it as ``***``
        return without_password(self.url)

    def health(self, link: Link | None = None) -> dict[str, Any]:
        """``GET /global/health``, with a distinct clear error for down, wrong URL, auth."""
        import httpx

        own = link is None
        link = link or Link(self.url, self.name, self.config.timeout_s, transport=self.transport)
        try:
            r = link.call("GET", "/global/health", "check its health", HEALTH_S)
        except AnswerTooLarge as exc:
            raise AgentError(f"{self.shown_url} is not an OpenCode server: {exc}") from None
        except ExchangeError as exc:
            if isinstance(exc.cause, httpx.ConnectError):
                other = (  # where the URL came from is the other thing to change
                    "or change OPENCODE_URL (it is set)"
                    if os.environ.get("OPENCODE_URL")
                    else "or set OPENCODE_URL"
                )
                raise AgentError(
                    f"OpenCode server at {self.shown_url} is not reachable ({exc.cause}); start one "
                    f"with `specwright agents serve-opencode` or `opencode serve`, {other}"
                ) from None
            raise
        finally:
            if own:
                link.close()
        if r.status_code == 401:
            user = os.environ.get("OPENCODE_SERVER_USERNAME", "opencode")
            raise AgentError(
                f"OpenCode server at {self.shown_url} refused the password in OPENCODE_SERVER_PASSWORD "
                f"(user {user!r}): check it and OPENCODE_SERVER_USERNAME"
                if os.environ.get("OPENCODE_SERVER_PASSWORD")
                else f"OpenCode server at {self.shown_url} wants a password: "
                "set OPENCODE_SERVER_PASSWORD (and OPENCODE_SERVER_USERNAME)"
            )
        try:
            body = r.json()
        except (ValueError, RecursionError):
            body = None
        if r.status_code != 200 or not isinstance(body, dict) or "healthy" not in body:
            raise AgentError(
                f"{self.shown_url} is not an OpenCode server: GET /global/health answered "
                f"HTTP {r.status_code} {r.text[:120]!r}; check OPENCODE_URL / the executor's url"
            )
        return body

    def _model(self) -> dict[str, str] | None:
        model, provider = self.config.model, self.config.provider
        if model and not provider and "/" in model:
            provider, model = model.split("/", 1)
        if model and provider:
            return {"providerID": provider, "modelID": model}
        if model:
            raise ConfigError(
                f"executor {self.name!r}: model {model!r} needs a provider "
                "(set provider, or write model as provider/model)"
            )
        return None

    def execute(self, task: Task, on_event: EventSink, cancel: threading.Event) -> Outcome:
        """Send ``task`` to the server and follow the session until it is idle."""
        workdir = Path(task.workdir).resolve()
        if not workdir.is_dir():
            raise AgentError(f"{workdir}: working directory does not exist")
        params = {"directory": str(workdir)}
        model = self._model()
        timeout_s = task.timeout_s or self.config.timeout_s
        log = open_stream_log(self.name, self.config.options.get("stream_log"), "a")
        link = Link(self.url, self.name, timeout_s, cancel, self.transport, HTTP_TIMEOUT_S)
        sse_client, sse_connections = make_client(self.url, SSE_READ_TIMEOUT_S, self.transport)
        events: BoundedQueue[dict[str, Any] | Overlong | _Closed] = BoundedQueue()
        stop = threading.Event()
        state = OpenCodeState()
        decoder = sse.SSEDecoder(sse.MAX_EVENT_BYTES)
        reader = threading.Thread(
            target=self._read_events,
            args=(sse_client, params, events, stop, decoder),
            daemon=True,
        )
        try:
            try:
                self.health(link)
                reader.start()
                self._subscribed(link, events, state)
                self._start(link, params, task, model, state, on_event)
                end = self._follow(link, params, events, state, on_event, log)
            except ExchangeCancelled:
                end = "cancelled"
                self._abort(link, params, state)
            stop.set()
            sse_connections.shut()  # ends the reader's stream now, whatever the server sends
            if reader.ident is not None:  # a cancel in the health check comes before its start
                reader.join(timeout=2)
            if not reader.is_alive():  # an event still being dropped is told, as one cut short
                for cut in decoder.close():
                    state.events += 1
                    on_event(overlong_warning(cut, state.events, what="event"))
            return self._outcome(link, params, state, on_event, end)
        finally:
            stop.set()
            sse_connections.shut()
            if state.session_id and not state.idle and not link.aborted:
                self._abort(link, params, state)  # an error on the way: leave nothing running
            sse_client.close()
            link.close()
            if reader.is_alive():
                reader.join(timeout=2)
            if log is not None:
                log.close()

    def _subscribed(
        self,
        link: Link,
        events: BoundedQueue[dict[str, Any] | Overlong | _Closed],
        state: OpenCodeState,
    ) -> None:
        """Wait for ``server.connected`` on the event stream, as long as the run may."""
        wait, why = link.budget(CONNECT_WAIT_S)
        until = time.monotonic() + wait
        first = None
        while first is None and time.monotonic() < until:
            if link.cancel.is_set():
                raise ExchangeCancelled(f"OpenCode server at {self.shown_url}: cancelled")
            first = self._next(events, min(0.05, max(until - time.monotonic(), 0)))
        state.events = 1
        if first is None or isinstance(first, _Closed | Overlong):
            limit = f", {why}" if wait < CONNECT_WAIT_S else ""
            why = f"no server.connected within {seconds(wait)} s{limit}"
            if isinstance(first, _Closed):
                why = first.reason
            elif isinstance(first, Overlong):
                why = overlong_warning(first, 1, what="event").message
            raise AgentError(
                f"OpenCode server at {self.shown_url}: cannot subscribe to /event ({why})"
            )

    def _start(
        self,
        link: Link,
        params: dict[str, str],
        task: Task,
        model: dict[str, str] | None,
        state: OpenCodeState,
        on_event: EventSink,
    ) -> None:
        """Create the session and send the prompt."""
        title = f"specwright {task.metadata.get('title', self.name)}"[:80]
        session = self._post(link, "/session", params, {"title": title}, "create a session")
        if not isinstance(session, dict) or not isinstance(session.get("id"), str):
            raise AgentError(
                f"OpenCode server at {self.shown_url}: POST /session answered "
                f"{str(session)[:200]!r}, not a session"
            )
        state.session_id = session["id"]
        raw = {"directory": params["directory"], "url": self.shown_url, "model": model}
        on_event(StepEvent("session", state.session_id, raw=raw))
        body: dict[str, Any] = {"parts": [{"type": "text", "text": task.prompt}]}
        if model:
            body["model"] = model
        if task.system_prompt:
            body["system"] = task.system_prompt
        path = f"/session/{state.session_id}/prompt_async"
        self._post(link, path, params, body, "send the prompt")

    @staticmethod
    def _next(
        q: BoundedQueue[dict[str, Any] | Overlong | _Closed], timeout: float
    ) -> dict[str, Any] | Overlong | _Closed | None:
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            return None

    def _read_events(
        self,
        client: httpx.Client,
        params: dict[str, str],
        out: BoundedQueue[dict[str, Any] | Overlong | _Closed],
        stop: threading.Event,
        decoder: sse.SSEDecoder,
    ) -> None:
        reason = "the server closed the event stream"
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        headers["Accept-Encoding"] = "identity"  # a compressed event could inflate past a bound
        try:
            with client.stream("GET", "/event", params=params, headers=headers) as response:
                for data in iter_events(response, decoder, stop):
                    if stop.is_set():
                        return
                    if isinstance(data, Overlong):
                        out.put(data)
                        continue
                    try:
                        payload = loads_json(data)
                    except (ValueError, RecursionError):
                        payload = {"type": "_malformed", "data": data[:2000]}
                    if isinstance(payload, dict) and not out.put(payload, len(data), stop):
                        return
        except Exception as exc:
            if stop.is_set():
                return
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        out.put(_Closed(reason))

    def _post(self, link: Link, path: str, params: dict[str, str], body: Any, what: str) -> Any:
        try:
            r = link.call("POST", path, what, HTTP_TIMEOUT_S, params=params, json=body)
        except AnswerTooLarge as exc:
            raise AgentError(f"OpenCode server at {self.shown_url}: cannot {what}: {exc}") from None
        if r.status_code >= 400:
            raise AgentError(
                f"OpenCode server at {self.shown_url}: cannot {what}: HTTP {r.status_code} {r.text[:300]}"
            )
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except (ValueError, RecursionError):
            raise AgentError(
                f"OpenCode server at {self.shown_url}: cannot {what}: answer is not "
                f"JSON: {r.text[:200]!r}"
            ) from None

    def _follow(
        self,
        link: Link,
        params: dict[str, str],
        events: BoundedQueue[dict[str, Any] | Overlong | _Closed],
        state: OpenCodeState,
        on_event: EventSink,
        log: IO[str] | None = None,
    ) -> str:
        """Consume events until the session is idle, the run's time is up or it is cancelled;
        returns how it ended."""
        started = time.monotonic()
        ended: str | None = None
        settle_until: float | None = None
        last_event = time.monotonic()
        while True:
            now = time.monotonic()
            if settle_until is not None and now >= settle_until:
                return ended or "idle"
            if ended is None and (link.cancel.is_set() or link.expired()):
                ended = "cancelled" if link.cancel.is_set() else "timeout"
                self._abort(link, params, state)
                # wait for the abort to land (idle), not forever
                settle_until = now + link.short(ABORT_SETTLE_S)
            elif ended is None and now - last_event > POLL_IDLE_S and state.busy:
                # a quiet stream: make sure we did not miss the idle
                if self._session_idle(link, params, state):
                    return "idle"
                last_event = time.monotonic()
            item = self._next(events, 0.05)
            if item is None:
                continue
            last_event = time.monotonic()
            state.events += 1
            if isinstance(item, Overlong):  # as a Claude Code line past its limit: the run goes on
                state.warnings += 1
                on_event(overlong_warning(item, state.events, what="event"))
                continue
            if log is not None and isinstance(item, dict):  # the log is a record too: redacted
                line = json.dumps({**for_log(item), "_t": round(last_event - started, 3)})
                log.write(self._scrub(line) + "\n")
            if isinstance(item, _Closed):
                if ended is not None or state.idle:
                    return ended or "idle"
                state.error = state.error or {
                    "name": "StreamDropped",
                    "data": {"message": item.reason},
                }
                self._abort(link, params, state)  # best effort: no session left running
                return "stream_dropped"
            if item.get("type") == "_malformed":
                state.warnings += 1
                on_event(
                    ErrorEvent(
                        f"event stream: data is not JSON: {item.get('data')!s:.200}",
                        kind="warning",
                        raw=item,
                    )
                )
                continue
            for event in parse_event(item, state):
                on_event(event)
            self._answer_permissions(link, params, state, on_event)
            if state.idle and settle_until is None:
                settle_until = time.monotonic() + SETTLE_S
            elif state.idle and ended is not None:
                settle_until = min(settle_until or now, time.monotonic() + SETTLE_S)

    def _answer_permissions(
        self,
        link: Link,
        params: dict[str, str],
        state: OpenCodeState,
        on_event: EventSink,
    ) -> None:
        reply = POLICIES[self.config.permission_policy]
        while state.permissions:
            ask = state.permissions.pop(0)
            path = f"/permission/{str(ask.get('id'))[:200]}/reply"
            answer, refused = permission_answer(ask, reply, params["directory"], state)
            if refused is not None:
                on_event(refused)
            try:
                r = link.call(
                    "POST",
                    path,
                    "answer a permission",
                    HTTP_TIMEOUT_S,
                    params=params,
                    json=answer,
                )
            except ExchangeCancelled:
                return  # the run is stopping: the session is aborted next
            except AnswerTooLarge as exc:
                on_event(ErrorEvent(f"could not answer permission: {exc}", kind="error"))
                continue
            if r.status_code >= 400:
                on_event(
                    ErrorEvent(
                        f"could not answer permission {str(ask.get('id'))[:200]}: HTTP "
                        f"{r.status_code} {r.text[:200]}",
                        kind="error",
                    )
                )

    def _abort(self, link: Link, params: dict[str, str], state: OpenCodeState) -> None:
        """Best effort, with a short bound of its own: the run is ending anyway."""
        if state.session_id and not link.aborted:
            link.aborted = True
            path = f"/session/{state.session_id}/abort"
            with contextlib.suppress(Exception):
                link.call(
                    "POST", path, "abort the session", ABORT_S, on_the_way_out=True, params=params
                )

    def _session_idle(self, link: Link, params: dict[str, str], state: OpenCodeState) -> bool:
        try:
            r = link.call("GET", "/session/status", "ask its status", STATUS_S, params=params)
            status = (r.json() or {}).get(state.session_id or "", {"type": "idle"})
        except Exception:
            return False
        if isinstance(status, dict) and status.get("type") == "idle":
            state.idle = True
            return True
        return False

    def _outcome(
        self,
        link: Link,
        params: dict[str, str],
        state: OpenCodeState,
        on_event: EventSink,
        end: str,
    ) -> Outcome:
        for event in finish_parse(state):
            on_event(event)
        usage = Usage(**{**vars(state.usage), "model": state.model})
        raw: dict[str, Any] | None = None
        if state.session_id and end != "stream_dropped":
            with contextlib.suppress(Exception):
                path = f"/session/{state.session_id}"
                try:
                    r = link.call(
                        "GET", path, "read the totals", TOTALS_S, on_the_way_out=True, params=params
                    )
                except AnswerTooLarge as exc:  # the steps' usage stands
                    on_event(ErrorEvent(f"session totals: {exc}", kind="warning"))
                    raise
                if r.status_code == 200:
                    info = r.json()
                    keys = ("id", "title", "cost", "tokens", "directory", "version")
                    raw = slim({k: info.get(k) for k in keys})
                    if not state.steps_done:  # else the steps' sum, which counts sub-agents too
                        usage = usage_from_totals(info, state.model)
        on_event(UsageEvent(usage, final=True, raw=raw))
        return session_outcome(
            state,
            end,
            usage,
            raw,
            url=self.shown_url,
            timeout_s=link.timeout_s,
            policy=self.config.permission_policy,
        )

    def probe(self) -> dict[str, Any]:
        """Whether the server answers, and its version (for `agents list`)."""
        try:
            body = self.health()
        except AgentError as exc:
            local = None
            with contextlib.suppress(AgentError):
                local = find_opencode(self.config.path)
            detail = str(exc) + (f" (a local opencode is at {local})" if local else "")
            return {"found": False, "location": self.shown_url, "version": None, "detail": detail}
        version = body.get("version")  # the server's word: text, bounded
        return {
            "found": True,
            "location": self.shown_url,
            "version": None if version is None else str(version)[:200],
            "detail": "server healthy" if body.get("healthy") else "server not healthy",
        }


def local_version(config_path: str | None = None) -> str | None:
    """The version of the local opencode executable, if there is one."""
    try:
        return version_of(find_opencode(config_path))
    except AgentError:
        return None
