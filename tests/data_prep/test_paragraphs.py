from data_prep.paragraphs import document_paragraphs, is_good_paragraph, normalize_text


def test_normalize_spaces_punctuation_and_lowercases():
    assert normalize_text("Hello,  World!\n(It's)") == "hello , world ! ( it ' s )"


def test_t2t_fixture_good_paragraph_is_kept(shared_data):
    # t2t's own test reads the whole good file as ONE paragraph
    text = (shared_data / "t2t_fixtures" / "para_good1.txt").read_text(encoding="utf-8")
    assert is_good_paragraph(text)


def test_t2t_fixture_bad_paragraphs_are_all_dropped(shared_data):
    lines = (shared_data / "t2t_fixtures" / "para_bad1.txt").read_text(encoding="utf-8").split("\n")
    assert len([line for line in lines if line.strip()]) == 11
    for line in lines:
        assert not is_good_paragraph(line), line


def test_filter_rules_each():
    assert not is_good_paragraph("a b c d .")  # fewer than 6 tokens
    assert not is_good_paragraph("1 2 3 4 5 6 7 .")  # no letters
    assert not is_good_paragraph("one two three four five six seven")  # no "." at all
    assert not is_good_paragraph("x . y . z . w . v . u .")  # "." too close to the previous one
    assert is_good_paragraph("the cat sat on the mat .")


def test_document_paragraphs_counts_drops():
    kept, dropped = document_paragraphs("The cat sat on the big mat.\n\nbrowse by\nHome | About")
    assert kept == ["the cat sat on the big mat ."]
    assert dropped == 2
