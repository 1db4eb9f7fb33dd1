from phoenix.markdown import markdown_table


def test_header_separator_and_rows() -> None:
    text = markdown_table(["a", "b c"], [["1", "2"], ("x", "")])
    assert text.splitlines() == ["| a | b c |", "| --- | --- |", "| 1 | 2 |", "| x |  |"]


def test_no_rows_is_just_the_header() -> None:
    assert markdown_table(["only"], []) == "| only |\n| --- |"
