from domainkd.sources import Section, chunk_sections, split_facts


def _section(text, document="d.md", start=0):
    return Section(document=document, title="T", text=text, start=start)


def words(text):
    """A stand-in tokenizer: one token per word."""
    return len(text.split())


def test_short_section_stays_whole():
    chunks = chunk_sections([_section("one two three\nfour five", start=7)], words, chunk_tokens=50, overlap_tokens=5)
    assert len(chunks) == 1
    assert chunks[0].text == "one two three\nfour five"
    assert (chunks[0].start, chunks[0].end, chunks[0].tokens) == (7, 30, 5)
    assert chunks[0].chunk_id == "d.md#7-30"


def test_long_section_is_windowed_with_overlap_and_offsets():
    lines = [" ".join([f"line{i}"] + ["word"] * 9) for i in range(10)]  # 10 words per line
    document = "# T\n" + "\n".join(lines)
    section = _section(document[4:], start=4)
    chunks = chunk_sections([section], words, chunk_tokens=30, overlap_tokens=10)
    assert len(chunks) > 1
    assert all(chunk.tokens <= 30 and chunk.tokens == len(chunk.text.split()) for chunk in chunks)
    assert all(document[chunk.start : chunk.end] == chunk.text for chunk in chunks)
    first_last_line = chunks[0].text.splitlines()[-1]
    assert chunks[1].text.splitlines()[0] == first_last_line  # one line (10 words) repeated
    covered = {line.split()[0] for chunk in chunks for line in chunk.text.splitlines()}
    assert covered == {f"line{i}" for i in range(10)}


def test_long_line_is_cut_at_sentences_then_words():
    text = " ".join(f"Sentence {i} has five words." for i in range(12)) + " " + " ".join(f"w{i}" for i in range(70))
    chunks = chunk_sections([_section(text)], words, chunk_tokens=20, overlap_tokens=0)
    assert all(chunk.tokens <= 20 for chunk in chunks)
    assert all(text[chunk.start : chunk.end] == chunk.text for chunk in chunks)
    assert chunks[0].text.endswith("words.")  # a sentence boundary, not mid-sentence
    assert " ".join(chunk.text for chunk in chunks).split() == text.split()  # nothing lost, nothing repeated


def test_real_tokenizer_counts(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    text = "\n".join(f"Rule {i}: badges are renewed every {i + 2} years at the front desk." for i in range(40))
    chunks = chunk_sections([_section(text)], count, chunk_tokens=64, overlap_tokens=8)
    assert len(chunks) > 2
    assert all(chunk.tokens == count(chunk.text) <= 64 for chunk in chunks)


def test_duplicate_chunks_are_kept_once():
    chunks = chunk_sections([_section("Same footer text here."), _section("Same  footer text here.", "e.md")], words, 50, 5)
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


def test_one_huge_line_is_chunked_in_linear_work():
    """A one-line document without sentence ends is cut into word runs; each run costs a few counts, not one per word.

    Re-counting the growing run after every word tokenised each run ~size/2 times over (a 4.9 MB line took
    minutes); galloping and bisecting over the run's length tokenises the text about 15 times over at most.
    """
    text = " ".join(f"w{index}" for index in range(40_000))
    counted = []

    def counting(piece):
        counted.append(len(piece))
        return len(piece.split())

    chunks = chunk_sections([_section(text)], counting, chunk_tokens=256, overlap_tokens=0)
    assert sum(counted) <= 20 * len(text), f"tokenised the text {sum(counted) / len(text):.0f} times over"
    assert all(chunk.tokens == len(chunk.text.split()) <= 256 for chunk in chunks)
    assert [chunk.tokens for chunk in chunks[:-1]] == [256] * (len(chunks) - 1)  # runs are as long as they may be
    assert " ".join(chunk.text for chunk in chunks) == text  # every word once, in order
    assert all(text[chunk.start : chunk.end] == chunk.text for chunk in chunks)


def test_a_word_longer_than_a_chunk_is_its_own_run():
    def characters(piece):  # a stand-in tokenizer: one token per 4 characters
        return -(-len(piece) // 4)

    text = "short words " + "x" * 100 + " then more short words"
    chunks = chunk_sections([_section(text)], characters, chunk_tokens=8, overlap_tokens=0)
    assert "x" * 100 in [chunk.text for chunk in chunks]
    assert " ".join(chunk.text for chunk in chunks) == text
