from domainkd.sources import Section, chunk_sections, split_facts


def _section(text, document="d.md"):
    return Section(document=document, title="T", text=text, start=0)


def test_short_section_stays_whole():
    chunks = chunk_sections([_section("one two three\nfour five")], chunk_words=50, overlap_words=5)
    assert len(chunks) == 1
    assert chunks[0].text == "one two three\nfour five"
    assert chunks[0].chunk_id == "d.md#0-0"


def test_long_section_is_windowed_with_overlap():
    lines = [" ".join([f"line{i}"] + ["word"] * 9) for i in range(10)]  # 10 words per line
    chunks = chunk_sections([_section("\n".join(lines))], chunk_words=30, overlap_words=10)
    assert len(chunks) > 1
    assert all(len(chunk.text.split()) <= 30 for chunk in chunks)
    first_last_line = chunks[0].text.splitlines()[-1]
    assert chunks[1].text.splitlines()[0] == first_last_line  # one line (10 words) repeated
    covered = {line.split()[0] for chunk in chunks for line in chunk.text.splitlines()}
    assert covered == {f"line{i}" for i in range(10)}


def test_duplicate_chunks_are_kept_once():
    chunks = chunk_sections([_section("Same footer text here."), _section("Same  footer text here.", "e.md")], 50, 5)
    assert len(chunks) == 1


def test_split_facts_sentences_and_bullets_with_lead_in():
    text = (
        "Staff get 27 days of leave. The year starts in October.\n\n"
        "Requests need notice:\n- up to 3 days need 6 days' notice;\n- longer ones need 19 days' notice.\n"
    )
    assert split_facts(text) == [
        "Staff get 27 days of leave.",
        "The year starts in October.",
        "Requests need notice: up to 3 days need 6 days' notice",
        "Requests need notice: longer ones need 19 days' notice.",
    ]


def test_split_facts_drops_fragments():
    assert split_facts("Yes. This one is long enough.") == ["This one is long enough."]


def test_split_facts_keeps_titles_with_their_names():
    text = "The Institute was founded in 1983 by the hydrologist Dr. Ana Reyes. The Director is Prof. Maud Ekwall."
    assert split_facts(text) == [
        "The Institute was founded in 1983 by the hydrologist Dr. Ana Reyes.",
        "The Director is Prof. Maud Ekwall.",
    ]
