"""Field envelopes: round trip, and every forged, truncated or moved value refused."""

from __future__ import annotations

import pytest

from shared.privacy.crypto import CiphertextInvalid, DekCache, WrongDataKey, new_dek, open_sealed, seal

DEK, DEK_ID = new_dek(), "d" * 24


def sealed(field: str = "email", value="jane@example.com", customer: str = "c1") -> str:
    return seal(DEK, DEK_ID, "v1", "acme", customer, field, value)


def test_round_trip_and_header_names_algorithm_and_keys() -> None:
    envelope = sealed(value={"lines": ["1 rue X"], "city": "Paris", "country": "FR"})
    assert envelope.startswith(f"acr1.A256GCM.{DEK_ID}.v1.")
    assert open_sealed(DEK, DEK_ID, "acme", "c1", "email", envelope)["city"] == "Paris"
    assert sealed() != sealed()  # fresh nonce each time


@pytest.mark.parametrize("tamper, error", [
    (lambda e: e[:-4], CiphertextInvalid),                                    # truncated
    (lambda e: e[:-2] + ("AA" if e[-2:] != "AA" else "BB"), CiphertextInvalid),  # forged tag
    (lambda e: e.replace("acr1.", "acr9.", 1), CiphertextInvalid),             # unknown version
    (lambda e: e.replace("A256GCM", "A128GCM", 1), CiphertextInvalid),         # algorithm swapped
    (lambda e: e.replace(".v1.", ".v2.", 1), CiphertextInvalid),               # key version edited
    (lambda e: e.replace(DEK_ID, "e" * 24, 1), WrongDataKey),                   # another customer's key
    (lambda e: "acr1.A256GCM", CiphertextInvalid),                             # not an envelope
    (lambda e: e[:20] + "!!!" + e[23:], CiphertextInvalid),                     # garbage
])
def test_tampered_envelopes_fail_precisely(tamper, error) -> None:
    with pytest.raises(error):
        open_sealed(DEK, DEK_ID, "acme", "c1", "email", tamper(sealed()))


def test_a_value_moved_to_another_customer_field_or_tenant_fails() -> None:
    envelope = sealed()
    for tenant, customer, field in (("acme", "c2", "email"), ("acme", "c1", "name"), ("globex", "c1", "email")):
        with pytest.raises(CiphertextInvalid, match="does not authenticate"):
            open_sealed(DEK, DEK_ID, tenant, customer, field, envelope)
    with pytest.raises(CiphertextInvalid):
        open_sealed(new_dek(), DEK_ID, "acme", "c1", "email", envelope)


def test_dek_cache_is_bounded_short_lived_and_never_prints_keys(monkeypatch) -> None:
    cache = DekCache(size=2, ttl=10)
    for n in range(3):
        cache.put("acme", f"c{n}", "id", bytes([n]) * 32)
    assert len(cache) == 2 and cache.get("acme", "c0", "id") is None
    assert cache.get("acme", "c2", "other-id") is None  # a different key id is a miss
    cache.put("acme", "c1", "id", b"k" * 32)
    cache.evict("acme", "c1")
    assert cache.get("acme", "c1", "id") is None
    assert "kkk" not in repr(cache)
    import shared.privacy.crypto as crypto

    cache.put("acme", "c9", "id", b"k" * 32)
    now = crypto.time.monotonic()
    monkeypatch.setattr(crypto.time, "monotonic", lambda: now + 11)
    assert cache.get("acme", "c9", "id") is None
