"""Validation of updates: structure checks and repairs, and bad input closing only its sender."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from bpmn.document import read
from rooms.limits import Limits, Metrics
from rooms.protocol import MalformedMessage, SyncUpdate, encode_message
from rooms.room import Room
from rooms.validation import Fix, StructureGuard, adds_content, state_vector
from tests.test_rooms_support import Peer, content, converged, loaded_doc, shape, task

Edit = Callable[[Doc[Any]], object]


def elements(doc: Doc[Any]) -> Map[Any]:
    return doc.get("elements", type=Map)


def di(doc: Doc[Any]) -> Map[Any]:
    return doc.get("di", type=Map)


def meta(doc: Doc[Any]) -> Map[Any]:
    return doc.get("meta", type=Map)


def where(fix: Fix) -> str:
    """``root/path.../name``: what ``fix`` writes."""
    return "/".join((fix.root, *fix.path, fix.name))


def guarded(edit: Edit) -> tuple[Doc[Any], list[str]]:
    """Apply a client's ``edit`` to a server document under a guard and repair it.

    Returns the server document and the fixes, as ``root/path/name=value`` strings.
    """
    server = loaded_doc("a", "b")
    guard = StructureGuard(server)
    client: Doc[Any] = Doc()
    client.apply_update(server.get_update())
    state = client.get_state()
    with client.transaction():
        edit(client)
    with guard.watch():
        server.apply_update(client.get_update(state))
    fixes = guard.fixes()
    guard.repair(fixes)
    assert guard.fixes() == [] or fixes  # idempotent: the repaired touched entries are fine
    described = [where(fix) + ("" if fix.deletes else f"={fix.value!r}") for fix in fixes]
    guard.close()
    return server, described


def test_a_valid_edit_needs_no_fix() -> None:
    def edit(doc: Doc[Any]) -> None:
        elements(doc)["n"] = task("N", order="a0", ext="<x/>", anon=True)
        elements(doc)["a"]["attrs"]["name"] = "renamed"
        di(doc)["a_di"]["bounds"] = [1, 2.5, 3, 4]
        di(doc)["a_di"]["waypoints"] = [[0, 0], [1.5, 2]]
        di(doc)["a_di"]["label"] = None
        di(doc)["a_di"]["future"] = {"unknown keys": "are left alone"}
        del elements(doc)["b"]
        doc.get("raw", type=Map)["r"] = Map({"parent": "", "slot": "", "xml": "<x/>"})
        meta(doc)["tag"] = "semantic:definitions"

    server, fixes = guarded(edit)
    assert fixes == []
    assert "n" in elements(server)


def put(*path: str, value: object) -> Edit:
    """An edit setting ``root/key.../name`` to ``value``."""

    def edit(doc: Doc[Any]) -> None:
        target = doc.get(path[0], type=Map)
        for key in path[1:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def drop(*path: str) -> Edit:
    """An edit deleting ``root/key.../name``."""

    def edit(doc: Doc[Any]) -> None:
        target = doc.get(path[0], type=Map)
        for key in path[1:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


NAMESPACES = [["bpmn", "http://www.omg.org/spec/BPMN/20100524/MODEL"]]
RAW_BAD_SLOT = {"parent": "", "xml": "<x/>", "slot": "x", "order": "V"}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # A replaced good value is put back: nothing is lost.
        (put("elements", "a", "type", value=5), ["elements/a/type='bpmn:task'"]),
        (drop("elements", "a", "parent"), ["elements/a/parent=''"]),
        (put("elements", "a", "attrs", "name", value=1), ["elements/a/attrs/name='a'"]),
        (put("di", "a_di", "bounds", value=[1, 2]), ["di/a_di/bounds=[0.0, 0.0, 100.0, 80.0]"]),
        (put("meta", "tag", value=""), ["meta/tag='bpmn:definitions'"]),
        (put("meta", "namespaces", value=[["one"]]), [f"meta/namespaces={NAMESPACES!r}"]),
        (put("meta", "schema", value=True), ["meta/schema=1.0"]),
        # Without a good old value: optional fields and items go, entries missing a required
        # field go whole.
        (put("elements", "a", "attrs", "new", value=Map({})), ["elements/a/attrs/new"]),
        (put("elements", "a", "attrs", value="flat"), ["elements/a/attrs"]),
        (put("elements", "a", "ext", value=Text("x")), ["elements/a/ext"]),
        (put("elements", "a", "anon", value="yes"), ["elements/a/anon"]),
        (put("di", "a_di", "waypoints", value=[[1, 2, 3]]), ["di/a_di/waypoints"]),
        (put("di", "a_di", "label", value=[1.0, math.nan, 2.0, 3.0]), ["di/a_di/label"]),
        (put("di", "a_di", "font", value=Array([1])), ["di/a_di/font"]),
        (put("elements", "n", value=Map({"parent": ""})), ["elements/n"]),
        (put("elements", "n", value=task("N", type="")), ["elements/n"]),
        (put("elements", "n", value="not a map"), ["elements/n"]),
        (put("di", "s", value=shape("a", x=math.inf)), ["di/s/bounds"]),
        (put("raw", "r", value=Map({"parent": ""})), ["raw/r"]),
        (put("raw", "r", value=Map(RAW_BAD_SLOT)), ["raw/r/slot"]),
        (put("meta", "definitions", value=Map({"id": 3})), ["meta/definitions/id"]),
    ],
)
def test_bad_changes_are_repaired(edit: Edit, expected: list[str]) -> None:
    server, fixes = guarded(edit)
    assert fixes == expected
    # What is left reads cleanly (a removed optional field may leave read() a default to use).
    assert [w.message for w in read(server).warnings if "not a slot" not in w.message] == []


def test_a_changed_field_is_checked_alone_and_a_set_entry_whole() -> None:
    server = loaded_doc("a")
    # A flaw the guard did not see made (it was not watching): it stays unread while only
    # other fields of its entry change, and is found once the entry itself is set again.
    elements(server)["a"]["anon"] = "not a flag"
    guard = StructureGuard(server)
    client: Doc[Any] = Doc()
    client.apply_update(server.get_update())

    def change(edit: Edit) -> list[str]:
        state = client.get_state()
        with client.transaction():
            edit(client)
        with guard.watch():
            server.apply_update(client.get_update(state))
        return [where(fix) for fix in guard.fixes()]

    assert change(put("elements", "a", "attrs", "name", value="renamed")) == []
    assert change(put("elements", "a", "type", value="")) == ["elements/a/type"]
    assert change(put("elements", "a", value=task("A"))) == []
    flawed = Map({"type": "bpmn:task", "parent": "", "anon": 1})
    assert change(put("elements", "a", value=flawed)) == ["elements/a/anon"]
    guard.close()


def test_a_repair_leaves_the_rest_of_the_same_update_in_place() -> None:
    def edit(doc: Doc[Any]) -> None:
        elements(doc)["good"] = task("Good")
        elements(doc)["bad"] = Map({"type": 1, "parent": ""})
        elements(doc)["a"]["attrs"]["name"] = "still here"

    server, fixes = guarded(edit)
    assert fixes == ["elements/bad"]
    assert "good" in elements(server)
    assert elements(server)["a"]["attrs"]["name"] == "still here"


def test_state_vectors_and_whether_an_update_adds_content() -> None:
    doc = loaded_doc("a")
    known = state_vector(doc.get_state())
    assert known == {doc.client_id: known[doc.client_id]}
    assert not adds_content(doc.get_update(), known)
    other: Doc[Any] = Doc()
    other.get("elements", type=Map)["x"] = task("X")
    assert adds_content(other.get_update(), known)
    with pytest.raises(MalformedMessage):
        adds_content(b"\xff\xff\xff", known)
    with pytest.raises(MalformedMessage):
        state_vector(b"\x01\x01")


# --- in a room ---------------------------------------------------------------------------------


async def test_a_structure_corrupting_update_closes_its_sender_and_is_repaired() -> None:
    metrics = Metrics()
    async with Room("d", loaded_doc("a", "b"), metrics=metrics) as room:
        bad, good = Peer("bad"), Peer("good")
        async with bad.join(room), good.join(room):
            await bad.sync()
            await good.sync()

            def corrupt(doc: Doc[Any]) -> None:
                elements(doc)["a"]["type"] = 42  # breaks an existing entry
                elements(doc)["junk"] = Map({"no": "type"})  # a new broken entry
                elements(doc)["fine"] = task("Fine")  # and one good change

            await bad.edit(corrupt)
            code, reason = await bad.closed()
            assert code == 4400
            assert "structure" in reason
            await converged(room, good)
            assert elements(room.doc)["a"]["type"] == "bpmn:task"
            assert "junk" not in elements(room.doc)
            assert "fine" in elements(room.doc)
            assert read(room.doc).warnings == []
            assert metrics.updates_repaired == 1
            # The room goes on.
            await good.edit(lambda doc: elements(doc).__setitem__("later", task("L")))
            assert "later" in elements(room.doc)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", 4400),
        (b"\x07", 4400),  # unknown message type
        (b"\x00\x00\x05ab", 4400),  # truncated
        (encode_message(SyncUpdate(b"\x01\x02\x03garbage")), 4400),
        (encode_message(SyncUpdate(b"\x00")), 4400),
        (b"\x00\x00\x02\xff\xff", 4400),  # sync step 1 with a state vector that does not decode
        (b"\x01\x03\x01\x01\x01", 4400),  # awareness update cut short
        (b"\x00" * 2000, 1009),
    ],
)
async def test_bad_messages_close_only_their_sender(data: bytes, code: int) -> None:
    limits = Limits(max_message_bytes=1000, byte_burst=2000)
    async with Room("d", loaded_doc("a"), limits=limits) as room:
        bad, good = Peer("bad"), Peer("good")
        async with bad.join(room), good.join(room):
            await good.sync()
            before = content(room.doc)
            await bad.send(data)
            assert (await bad.closed())[0] == code
            assert content(room.doc) == before
            await bad.send(b"\x03")  # a closed client's messages are ignored
            await good.edit(lambda doc: elements(doc).__setitem__("n", task("N")))
            await good.send_message(SyncUpdate(good.doc.get_update()))
            assert "n" in elements(room.doc)
            await good.sync()


class PanicException(BaseException):
    """Stands in for pyo3's: a Rust panic surfaces as a BaseException of this name."""


@pytest.mark.parametrize("error", [KeyError("bug"), PanicException("yrs panicked")])
async def test_a_bug_while_handling_closes_only_that_client_with_1011(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    async with Room("d", loaded_doc("a")) as room:
        victim, other = Peer("victim"), Peer("other")
        async with victim.join(room), other.join(room):
            await other.sync()

            def explode() -> list[object]:
                raise error

            with monkeypatch.context() as patch:
                patch.setattr(room._guard, "fixes", explode)
                await victim.edit(lambda doc: elements(doc).__setitem__("n", task("N")))
                assert (await victim.closed())[0] == 1011
            assert not room.failed
            await other.edit(lambda doc: elements(doc).__setitem__("m", task("M")))
            assert "m" in elements(room.doc)


async def test_a_document_that_stops_working_fails_the_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = Metrics()
    async with Room("d", loaded_doc("a"), metrics=metrics) as room:
        victim, other = Peer("victim"), Peer("other")
        async with victim.join(room), other.join(room):
            await other.sync()

            def broken(*args: object) -> bytes:
                raise RuntimeError("already borrowed")

            with monkeypatch.context() as patch:
                patch.setattr(room.doc, "apply_update", lambda update: {}["boom"])
                patch.setattr(room.doc, "get_state", broken)
                await victim.send_message(SyncUpdate(b"\x00\x00"))
            assert room.failed and room.stopped
            assert (await victim.closed())[0] == 1011
            assert (await other.closed())[0] == 1011
            assert metrics.rooms_failed == 1
