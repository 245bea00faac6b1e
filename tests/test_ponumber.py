import pytest

from coupad.ponumber import InvalidPoNumber, PoNumber, normalize


@pytest.mark.parametrize(
    "text",
    ["PO15262984", "po 15262984", "15262984", " PO-15262984 ", "Po#15262984", 15262984,
     15262984.0, "15262984.0", "PO\u00a015262984"],
)
def test_spellings_of_one_po_are_the_same(text):
    assert normalize(text) == PoNumber("15262984")
    assert normalize(text).display == "PO15262984"


def test_pm_prefix_is_stripped():
    assert normalize("PM987654").digits == "987654"


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        (None, "empty"),
        ("   ", "empty"),
        ("12345", "too short"),
        ("1" * 30, "too long"),
        ("PO12AB34", "not a PO number"),
        ("=CMD()", "not a PO number"),
        ("１２３４５６７", "not a PO number"),  # full-width digits are not ASCII digits
        ("1.5e7", "not a PO number"),
        (12.5, "decimals"),
        (True, "not a PO number"),
        ("../../etc/passwd", "not a PO number"),
    ],
)
def test_hostile_cells_are_refused_with_a_reason(text, words):
    with pytest.raises(InvalidPoNumber, match=words):
        normalize(text)
