"""Present / CleanUp of an order's TXT values (core.issuance): batching providers get one call
for all their values, the others one call per value; cleanup reports each value it could not
remove and the journal keeps exactly those."""

from __future__ import annotations

from collections.abc import Sequence

from acmeflow.core import errors
from acmeflow.core.dns01 import ChallengeRecord
from acmeflow.core.issuance import add_txt_records, cleanup_txt_records


class RecordingProvider:
    """A fake DNS provider that records calls (no batch methods)."""

    type_name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.values: set[tuple[str, str]] = set()

    def present(self, fqdn: str, value: str) -> None:
        self.calls.append(("present", (fqdn, value)))
        self.values.add((fqdn, value))

    def cleanup(self, fqdn: str, value: str) -> None:
        self.calls.append(("cleanup", (fqdn, value)))
        self.values.discard((fqdn, value))

    def txt_values(self, fqdn: str) -> list[str]:
        return sorted(v for f, v in self.values if f == fqdn)

    def check_nameservers(self) -> Sequence[str] | None:
        return None


class BatchingProvider(RecordingProvider):
    """A fake DNS provider with ``present_all``/``cleanup_all``; cleanup can be told to fail."""

    type_name = "batching"
    refuse_cleanup = False

    def present_all(self, items: Sequence[tuple[str, str]]) -> None:
        self.calls.append(("present_all", list(items)))
        self.values.update(items)

    def cleanup_all(self, items: Sequence[tuple[str, str]]) -> None:
        self.calls.append(("cleanup_all", list(items)))
        if self.refuse_cleanup:
            raise errors.TXTRecordError(detail="batching: REFUSED")
        self.values.difference_update(items)


class ListJournal:
    def __init__(self) -> None:
        self.rows: list[ChallengeRecord] = []

    def record(self, records: Sequence[ChallengeRecord]) -> None:
        self.rows.extend(records)

    def forget(self, records: Sequence[ChallengeRecord]) -> None:
        self.rows = [r for r in self.rows if r not in records]


def _records() -> list[ChallengeRecord]:
    return [
        ChallengeRecord("a.example.com", "_acme-challenge.a.example.com",
                        "_acme-challenge.a.example.com", "v1", "bind"),
        ChallengeRecord("*.a.example.com", "_acme-challenge.a.example.com",
                        "_acme-challenge.a.example.com", "v2", "bind"),
        ChallengeRecord("b.example.org", "_acme-challenge.b.example.org",
                        "_acme-challenge.b.example.org", "v3", "api"),
        ChallengeRecord("c.example.org", "_acme-challenge.c.example.org",
                        "_acme-challenge.c.example.org", "v4", "api"),
    ]  # fmt: skip


def test_batching_provider_gets_all_its_values_in_one_call_the_other_one_each() -> None:
    bind, api = BatchingProvider(), RecordingProvider()
    journal = ListJournal()
    add_txt_records(_records(), {"bind": bind, "api": api}, journal=journal)
    assert bind.calls == [
        (
            "present_all",
            [("_acme-challenge.a.example.com", "v1"), ("_acme-challenge.a.example.com", "v2")],
        )
    ]
    assert sorted(api.calls) == [
        ("present", ("_acme-challenge.b.example.org", "v3")),
        ("present", ("_acme-challenge.c.example.org", "v4")),
    ]
    assert len(journal.rows) == 4

    problems = cleanup_txt_records(_records(), {"bind": bind, "api": api}, journal=journal)
    assert problems == []
    assert bind.calls[-1][0] == "cleanup_all" and not bind.values and not api.values
    assert journal.rows == []


def test_a_refused_batch_cleanup_is_reported_per_value_and_stays_journaled() -> None:
    bind, api = BatchingProvider(), RecordingProvider()
    journal = ListJournal()
    add_txt_records(_records(), {"bind": bind, "api": api}, journal=journal)
    bind.refuse_cleanup = True
    problems = cleanup_txt_records(_records(), {"bind": bind, "api": api}, journal=journal)
    assert problems == [
        "_acme-challenge.a.example.com: batching: REFUSED",
        "_acme-challenge.a.example.com: batching: REFUSED",
    ]
    assert not api.values  # the other provider's values are gone
    assert sorted(r.value for r in journal.rows) == ["v1", "v2"]  # left for `sweep`


def test_cleanup_with_a_provider_gone_cleans_the_rest() -> None:
    api = RecordingProvider()
    records = _records()
    add_txt_records(records[2:], {"api": api})
    problems = cleanup_txt_records(records, {"api": api})
    assert len(problems) == 2 and all("bind" in p for p in problems)
    assert not api.values


def test_an_adapter_bug_in_a_batch_is_the_catalog_txt_error() -> None:
    class Broken(BatchingProvider):
        def present_all(self, items: Sequence[tuple[str, str]]) -> None:
            raise KeyError("zone")

    try:
        add_txt_records(_records()[:2], {"bind": Broken()})
    except errors.TXTRecordError as exc:
        assert exc.detail == "batching: KeyError: 'zone'"
    else:
        raise AssertionError("no error")
