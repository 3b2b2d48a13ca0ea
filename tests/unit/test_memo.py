from kcmp_monitor.memo import IdentityMemo


def test_a_value_is_found_by_the_ids_it_was_stored_under():
    memo = IdentityMemo(4)
    a, b = ("caller",), ("target",)
    assert memo.get((id(a), id(b), 7)) is None
    assert memo.put((id(a), id(b), 7), (a, b), "text") == "text"
    assert memo.get((id(a), id(b), 7)) == "text"
    assert memo.get((id(a), id(b), 8)) is None


def test_a_full_memo_starts_again_from_empty():
    memo = IdentityMemo(2)
    kept = [(n,) for n in range(3)]
    for obj in kept:
        memo.put((id(obj),), (obj,), obj[0])
    assert memo.get((id(kept[0]),)) is None and memo.get((id(kept[2]),)) == 2
