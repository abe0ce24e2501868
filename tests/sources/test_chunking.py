import pytest

from domainkd.sources import Section, chunk_sections, split_facts, tokenizer_counter


def _section(text, document="d.md", start=0):
    return Section(document=document, title="T", text=text, start=start)


def words(texts):
    """A stand-in tokenizer: one token per word."""
    return [len(text.split()) for text in texts]


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
    count = tokenizer_counter(tokenizer)
    samples = ["Badges  are renewed every 3 years.", " leading space", "x" * 300, "naïve café — 27°C\n\tnext", ""]
    assert count(samples) == [len(tokenizer(sample, add_special_tokens=False)["input_ids"]) for sample in samples]
    text = "\n".join(f"Rule {i}: badges are renewed every {i + 2} years at the front desk." for i in range(40))
    chunks = chunk_sections([_section(text)], count, chunk_tokens=64, overlap_tokens=8)
    assert len(chunks) > 2
    assert all(chunk.tokens == count([chunk.text])[0] <= 64 for chunk in chunks)
    # one line of words without sentence ends: word runs whose counts are the tokenizer's own
    line = " ".join(f"valve{i} opened at {i % 24}:00 by operator{i % 7}" for i in range(200))
    chunks = chunk_sections([_section(line)], count, chunk_tokens=40, overlap_tokens=0)
    assert all(chunk.tokens == count([chunk.text])[0] <= 40 for chunk in chunks)
    assert min(chunk.tokens for chunk in chunks[:-1]) >= 30  # packed close to the limit, not cut short
    assert " ".join(chunk.text for chunk in chunks) == line
    # paragraphs apart by blank lines: the breaks between lines are tokens too, within the limit
    paragraphs = "\n\n\n".join(f"Rule {i}: renew the badge every {i + 2} years.\n\n- at the desk;\n- with ID." for i in range(30))
    chunks = chunk_sections([_section(paragraphs)], count, chunk_tokens=48, overlap_tokens=12)
    assert all(chunk.tokens == count([chunk.text])[0] <= 48 for chunk in chunks)
    assert all(any(f"Rule {i}: renew" in chunk.text for chunk in chunks) for i in range(30))


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


def test_split_facts_joins_hard_wrapped_lines_but_not_table_rows():
    text = (
        "   Licensor grants You a licence to reproduce the Work, provided that\n"
        "   You give recipients a copy of this License within 30 days.\n\n"
        "- a list item that goes on\n  over a second line;\n- a second item of the list\n\n"
        "| form | use of the form |\n| HR-22 | leave requests |"
    )
    assert split_facts(text) == [
        "Licensor grants You a licence to reproduce the Work, provided that You give recipients a copy of this License within 30 days.",
        "a list item that goes on over a second line",
        "a second item of the list",
        "| form | use of the form |",
        "| HR-22 | leave requests |",
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

    def counting(pieces):
        counted.append(sum(map(len, pieces)))
        return [len(piece.split()) for piece in pieces]

    chunks = chunk_sections([_section(text)], counting, chunk_tokens=256, overlap_tokens=0)
    assert sum(counted) <= 5 * len(text), f"tokenised the text {sum(counted) / len(text):.0f} times over"
    assert len(counted) <= 5, f"{len(counted)} calls of the tokenizer, where each level takes one batch"
    assert all(chunk.tokens == len(chunk.text.split()) <= 256 for chunk in chunks)
    assert [chunk.tokens for chunk in chunks[:-1]] == [256] * (len(chunks) - 1)  # runs are as long as they may be
    assert " ".join(chunk.text for chunk in chunks) == text  # every word once, in order
    assert all(text[chunk.start : chunk.end] == chunk.text for chunk in chunks)


def test_a_word_longer_than_a_chunk_is_its_own_run():
    def characters(pieces):  # a stand-in tokenizer: one token per 4 characters
        return [-(-len(piece) // 4) for piece in pieces]

    text = "short words " + "x" * 100 + " then more short words"
    chunks = chunk_sections([_section(text)], characters, chunk_tokens=8, overlap_tokens=0)
    assert "x" * 100 in [chunk.text for chunk in chunks]
    assert " ".join(chunk.text for chunk in chunks) == text


def _merging(pieces):  # one extra token per 40 characters of the whole text: runs far over their words' sum
    return [len(piece.split()) + len(piece) // 40 for piece in pieces]


def _bare_first_word(pieces):  # a word without the space before it costs a token more, as in byte-level BPE
    return [len(piece.split()) + (piece[:1] not in ("", " ")) for piece in pieces]


@pytest.mark.parametrize("counter", [_merging, _bare_first_word])
def test_a_run_its_word_counts_underestimate_is_cut_on_true_counts(counter):
    """Word runs are packed on per-word counts (each with the space before it); a tokenizer that counts a
    run as more than that sum must still get runs within the limit, every word once, in order."""
    text = " ".join(f"w{index}" for index in range(3_000))
    chunks = chunk_sections([_section(text)], counter, chunk_tokens=50, overlap_tokens=0)
    assert all(chunk.tokens == counter([chunk.text])[0] <= 50 for chunk in chunks)
    assert max(chunk.tokens for chunk in chunks) >= 45
    assert " ".join(chunk.text for chunk in chunks) == text
    assert all(text[chunk.start : chunk.end] == chunk.text for chunk in chunks)
