"""What a person using the diagrams REST API does next, sans I/O.

One visit: list the diagrams (sometimes searching titles with ``q``, sometimes paging on with
the cursor), open one (the one they had open again, with ``If-None-Match``, about half the
time), sometimes look at its summary or download its XML, and sometimes save a small change:
a task renamed, with ``expectedVersion``. A 409 is what concurrent saves give: the client
gets the diagram again and re-applies its change, as an editor would. A 429 is waited out
as its ``Retry-After`` says. Every request is preceded by a think time drawn from an
exponential distribution (people do not click on a clock).

:meth:`Workflow.visit` is a generator: it yields each :class:`Call` and is sent back the
:class:`Reply`. ``bpmn-collab bench rest`` (asyncio, httpx) and ``bench/locustfile.py``
(gevent, requests) pump the same generator, so both loads are the same people.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

OPERATIONS: Final = ("list", "get", "summary", "xml", "save")
# Searchable words in the titles of the diagrams a run creates; a search types a prefix.
WORDS: Final = (
    "Order",
    "Invoice",
    "Shipping",
    "Onboarding",
    "Claims",
    "Procurement",
    "Support",
    "Payroll",
)
_LABELS: Final = ("Review order", "Approve invoice", "Check stock", "Ship goods", "Notify")
# A task's name attribute: <bpmn:task ... name="...">, <userTask name="...">, any prefix.
_TASK_NAME: Final = re.compile(r'(<(?:[\w.-]+:)?\w*[Tt]ask\b[^>]*?\sname=")([^"]*)(")')

Outcome = Literal["ok", "not_modified", "conflict", "rate_limited", "error"]


def diagram_title(index: int, tag: str) -> str:
    """Title of the ``index``-th diagram of a run: a searchable word, a number, the run."""
    return f"{WORDS[index % len(WORDS)]} handling {index} ({tag})"


@dataclass(frozen=True, slots=True)
class Habits:
    """How often a person does what (shares of visits), and how long they think."""

    think_s: float = 5.0  # mean of the exponential pause before each request
    page_size: int = 20
    next_page: float = 0.3
    search: float = 0.2
    reopen: float = 0.5  # reopen the diagram they had open, with If-None-Match
    summary: float = 0.2
    xml: float = 0.1
    save: float = 0.3
    conflict_retries: int = 3
    rate_limit_retries: int = 5
    max_retry_after_s: float = 10.0

    def __post_init__(self) -> None:
        if self.think_s <= 0:
            raise ValueError("think time must be > 0 s")


@dataclass(frozen=True, slots=True)
class Call:
    """One request: what to send, after pausing ``think_s`` since the last reply."""

    op: str  # one of OPERATIONS: the latency series it counts in
    method: str
    path: str
    think_s: float
    headers: dict[str, str]
    params: dict[str, str] | None = None
    body: bytes | None = None
    conditional: bool = False  # sent with If-None-Match: a 304 is a success

    def outcome(self, status: int) -> Outcome:
        """How a reply's status counts: 304, 409 and 429 are what real clients meet."""
        if 200 <= status < 300:
            return "ok"
        if status == 304 and self.conditional:
            return "not_modified"
        if status == 409 and self.op == "save":
            return "conflict"
        if status == 429 and self.method != "GET":
            return "rate_limited"
        return "error"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int  # 0: no answer (connection failed, timed out)
    body: bytes = b""
    retry_after: str | None = None


@dataclass(slots=True)
class _Open:
    """The diagram a person has open: enough to reopen it conditionally and to edit it."""

    id: str
    version: int
    xml: str


def renamed(xml: str, rng: random.Random, name: str) -> str | None:
    """``xml`` with one task (chosen at random) renamed to ``name``; None without a task.

    A regular expression on the text, not a parse: it is what one save costs the load
    generator, and ``name`` holds nothing that needs escaping.
    """
    matches = list(_TASK_NAME.finditer(xml))
    if not matches:
        return None
    match = rng.choice(matches)
    return f"{xml[: match.start(2)]}{name}{xml[match.end(2) :]}"


class Workflow:
    """One person's visits, on their own token, with their own random choices."""

    def __init__(
        self,
        user: str,
        token: str,
        known_ids: Sequence[str],
        habits: Habits,
        rng: random.Random,
    ) -> None:
        if not known_ids:
            raise ValueError("a workflow needs at least one diagram")
        self.user = user
        self.habits = habits
        self.rng = rng
        self.known_ids = list(known_ids)
        self.counts: Counter[str] = Counter()  # saves, conflict retries, give-ups, waits
        self._auth = f"Bearer {token}"
        self._open: _Open | None = None
        self._edits = 0

    def visit(self) -> Generator[Call, Reply, None]:
        """One visit, list to (maybe) save; returns early when a step fails."""
        habits, rng = self.habits, self.rng
        params = {"limit": str(habits.page_size)}
        if rng.random() < habits.search:
            word = rng.choice(WORDS).lower()
            params["q"] = word[: rng.randint(3, len(word))]  # typed part of a word
        reply = yield self._call("list", "GET", "/api/diagrams", params=params)
        ids, cursor = _page(reply)
        if cursor is not None and rng.random() < habits.next_page:
            reply = yield self._call(
                "list", "GET", "/api/diagrams", params={**params, "cursor": cursor}
            )
            ids += _page(reply)[0]

        opened = self._open
        if opened is not None and rng.random() < habits.reopen:
            diagram_id = opened.id
        else:
            diagram_id = rng.choice(ids or self.known_ids)
        path = f"/api/diagrams/{diagram_id}"
        etag = _etag(opened) if opened is not None and opened.id == diagram_id else None
        reply = yield self._call("get", "GET", path, etag=etag)
        if reply.status == 200:
            self._open = _opened(reply)
        elif not (reply.status == 304 and etag is not None):
            return
        if self._open is None:
            return

        roll = rng.random()
        if roll < habits.summary:
            yield self._call("summary", "GET", f"{path}/summary", etag=_etag(self._open))
        elif roll < habits.summary + habits.xml:
            yield self._call("xml", "GET", f"{path}/xml")
        if rng.random() < habits.save:
            yield from self._save(path)

    def _save(self, path: str) -> Generator[Call, Reply, None]:
        habits = self.habits
        self.counts["saves"] += 1
        think = self._think()
        for attempt in range(habits.conflict_retries + 1):
            opened = self._open
            if opened is None:
                return
            self._edits += 1
            name = f"{_LABELS[self._edits % len(_LABELS)]} {self.user}.{self._edits}"
            xml = renamed(opened.xml, self.rng, name)
            if xml is None:
                self.counts["nothing_to_rename"] += 1
                return
            body = orjson.dumps(
                {"expectedVersion": opened.version, "xml": xml, "message": f"rename: {name}"}
            )
            reply = yield self._write("PUT", path, body, think)
            for _ in range(habits.rate_limit_retries):
                if reply.status != 429:
                    break
                self.counts["rate_limit_waits"] += 1
                reply = yield self._write("PUT", path, body, self._retry_after(reply))
            if reply.status == 200:
                self.counts["saved"] += 1
                self._open = _Open(opened.id, _version(reply, opened.version + 1), xml)
                return
            if reply.status != 409 or attempt == habits.conflict_retries:
                break
            # Stale: get the latest and re-apply the change at once, as an editor would.
            self.counts["conflict_retries"] += 1
            reply = yield self._call("get", "GET", path, think_s=0.0)
            if reply.status != 200:
                return
            self._open = _opened(reply)
            think = 0.0
        self.counts["saves_given_up"] += 1

    def _call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        etag: str | None = None,
        think_s: float | None = None,
    ) -> Call:
        headers = {"Authorization": self._auth}
        if etag is not None:
            headers["If-None-Match"] = etag
        return Call(
            op,
            method,
            path,
            self._think() if think_s is None else think_s,
            headers,
            params=params,
            conditional=etag is not None,
        )

    def _write(self, method: str, path: str, body: bytes, think_s: float) -> Call:
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        return Call("save", method, path, think_s, headers, body=body)

    def _think(self) -> float:
        return self.rng.expovariate(1 / self.habits.think_s)

    def _retry_after(self, reply: Reply) -> float:
        try:
            wait_s = float(reply.retry_after or 1)
        except ValueError:  # an HTTP date: not what this server sends
            wait_s = 1.0
        return min(max(wait_s, 0.1), self.habits.max_retry_after_s)


def _json(reply: Reply) -> dict[str, Any] | None:
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _page(reply: Reply) -> tuple[list[str], str | None]:
    """Diagram ids on a list page and the cursor to the next one (none after a failure)."""
    body = _json(reply) if reply.status == 200 else None
    if body is None:
        return [], None
    data = body.get("data")
    ids = (
        [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
        if isinstance(data, list)
        else []
    )
    cursor = body.get("nextCursor") if body.get("hasMore") else None
    return ids, cursor if isinstance(cursor, str) else None


def _opened(reply: Reply) -> _Open | None:
    """The diagram a GET answered with; None for a body that is not one (the visit ends)."""
    body = _json(reply)
    if body is None:
        return None
    diagram_id, version, xml = body.get("id"), body.get("version"), body.get("xml")
    if not (isinstance(diagram_id, str) and isinstance(version, int) and isinstance(xml, str)):
        return None
    return _Open(diagram_id, version, xml)


def _version(reply: Reply, default: int) -> int:
    body = _json(reply)
    version = body.get("version") if body is not None else None
    return version if isinstance(version, int) else default


def _etag(opened: _Open) -> str:
    return f'"{opened.version}"'
