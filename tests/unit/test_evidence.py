"""Evidence chain: hash links, verification, rebuilding from stored entries."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance import GENESIS, EvidenceChain, canonical_json, find_break, sha256_hex, verify

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def sample_chain() -> EvidenceChain:
    chain = EvidenceChain("FIN-2026-11-042")
    chain.append("spec", "alice@example.com", {"sha256": "ab" * 32, "tenants": ["berlin"]}, AT)
    chain.append("approval", "bob@example.com", {"role": "platform"}, "2026-11-23T10:00:00+00:00")
    chain.append("backup", "worker-db", {"bytes": 1024, "note": "Grüße €"}, AT)
    return chain


def test_entries_are_hash_linked_from_genesis():
    entries = sample_chain().entries
    assert [e["seq"] for e in entries] == [0, 1, 2]
    assert entries[0]["prev"] == GENESIS
    assert entries[1]["prev"] == entries[0]["hash"]
    body = {k: v for k, v in entries[0].items() if k != "hash"}
    assert entries[0]["hash"] == sha256_hex((GENESIS + canonical_json(body)).encode("utf-8"))
    assert entries[0]["at"] == "2026-11-23T09:00:00+00:00"


def test_canonical_json_sorts_keys_and_keeps_unicode():
    assert canonical_json({"b": 1, "a": "€"}) == '{"a":"€","b":1}'


def test_bundle_verifies_after_a_round_trip_through_json():
    bundle = json.loads(json.dumps(sample_chain().bundle()))
    assert bundle["head"] == bundle["entries"][-1]["hash"]
    assert verify(bundle) is None


def test_empty_chain_has_genesis_head():
    assert EvidenceChain("R-1").bundle() == {"release_id": "R-1", "entries": [], "head": GENESIS}


def test_chain_rebuilt_from_entries_keeps_appending():
    original = sample_chain()
    rebuilt = EvidenceChain("FIN-2026-11-042", original.entries)
    rebuilt.append("outcome", "finrelease", {"result": "Completed"}, AT)
    original.append("outcome", "finrelease", {"result": "Completed"}, AT)
    assert rebuilt.head == original.head


def test_rebuilding_from_tampered_entries_is_refused():
    entries = sample_chain().entries
    entries[1]["data"]["role"] = "finance"
    with pytest.raises(ValueError, match="evidence entry 1 is broken"):
        EvidenceChain("FIN-2026-11-042", entries)


def test_truncated_chain_is_detected_by_its_head():
    bundle = sample_chain().bundle()
    bundle["entries"].pop()
    assert verify(bundle) == 2


def test_removed_entry_breaks_the_chain_where_it_was():
    bundle = sample_chain().bundle()
    del bundle["entries"][1]
    assert verify(bundle) == 1


def test_non_json_data_is_refused_on_append():
    with pytest.raises(TypeError):
        EvidenceChain("R-1").append("spec", "a", {"when": AT}, AT)


def test_not_a_bundle_is_broken_at_zero():
    assert find_break([1, 2]) is not None and verify({"entries": "x"}) == 0


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = ["seq", "at", "kind", "actor", "data", "prev", "hash"]


def changed_value(value: object, replacement: object) -> object:
    """A value whose canonical JSON differs from `value`'s."""
    if canonical_json(replacement) != canonical_json(value):
        return replacement
    return [replacement]


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.dictionaries(st.text(max_size=5), json_values, max_size=3), min_size=1, max_size=5
    ),
    index=st.integers(0, 4),
    field=st.sampled_from(FIELDS),
    replacement=json_values,
)
def test_changing_any_single_value_breaks_verification_at_that_entry(
    data, index, field, replacement
):
    chain = EvidenceChain("R-1")
    for i, item in enumerate(data):
        chain.append(f"kind-{i}", "auditor", item, AT)
    bundle = copy.deepcopy(chain.bundle())
    index %= len(data)
    entry = bundle["entries"][index]
    entry[field] = changed_value(entry[field], replacement)
    assert verify(bundle) == index
