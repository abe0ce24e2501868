import torch

from domainkd.models import generate_texts, load_causal_lm, render_prompt
from domainkd.models import generation

SYSTEM = "You answer questions about the staff handbook of the institute, briefly and exactly."


def test_shared_prefix_gives_the_same_answers_as_plain_batching(tiny_model):
    model, tokenizer = load_causal_lm(str(tiny_model), dtype=torch.float64)
    torch.manual_seed(0)
    for parameter in model.parameters():  # large random weights: varied tokens instead of one repeated
        parameter.data.normal_(0, 0.5)
    questions = ["How many days of leave?", "Who approves purchases above the limit set by finance?", "When?"]
    prompts = [render_prompt(tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]) for q in questions]
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert generation._common_prefix_length(rows) >= generation.MIN_SHARED_PREFIX  # the shared path is taken

    shared = generate_texts(model, tokenizer, prompts, max_new_tokens=12)
    plain = generate_texts(model, tokenizer, prompts, max_new_tokens=12, share_prefix=False)
    alone = [generate_texts(model, tokenizer, [p], max_new_tokens=12)[0] for p in prompts]
    assert shared == plain == alone
    assert all(shared)


def test_common_prefix_leaves_every_row_a_token_of_its_own():
    rows = [list(range(40)), list(range(20))]
    assert generation._common_prefix_length(rows) == 19
    assert generation._common_prefix_length([[1] * 30, [2] * 30]) == 0
    assert generation._common_prefix_length([list(range(10)), list(range(10))]) == 0  # too short to pay


def _random_model(tiny_model):
    model, tokenizer = load_causal_lm(str(tiny_model), dtype=torch.float64)
    torch.manual_seed(0)
    for parameter in model.parameters():  # large random weights: varied tokens instead of one repeated
        parameter.data.normal_(0, 0.5)
    return model, tokenizer


QUESTIONS = [
    "How many days of leave?",
    "Who approves purchases above the limit set by finance?",
    "When?",
    "Where do visitors sign in, and who keeps the visitor book up to date?",
    "Parking?",
]


def _prompts(tokenizer, system=SYSTEM):
    return [render_prompt(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": q}]) for q in QUESTIONS]


def test_continuous_batching_answers_as_one_prompt_at_a_time_and_streams_in_finishing_order(tiny_model):
    model, tokenizer = _random_model(tiny_model)
    prompts = _prompts(tokenizer)
    alone_ids = [generate_texts(model, tokenizer, [p], max_new_tokens=14) for p in prompts]
    # an end token the answers reach at different steps, so sequences leave and newcomers join mid-run
    words = [tokenizer(text[0], add_special_tokens=False)["input_ids"] for text in alone_ids]
    stop = next(token for token in words[0][2:] if all(token not in w[:2] for w in words))
    model.generation_config.eos_token_id = stop
    alone = [generate_texts(model, tokenizer, [p], max_new_tokens=14)[0] for p in prompts]
    assert len(tokenizer(alone[0], add_special_tokens=False)["input_ids"]) < 14 <= min(
        len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in alone[1:]
    )  # one short answer, so with fewer slots than prompts a newcomer joins sequences already running

    for slots in (1, 2, 3, 8):
        finished = list(generation.generate_stream(model, tokenizer, prompts, max_new_tokens=14, slots=slots))
        assert sorted(index for index, _ in finished) == list(range(len(prompts)))
        assert dict(finished) == dict(enumerate(alone)), f"slots={slots}"
    backwards = prompts[::-1]  # the first prompt's answer ends early (the chosen end token), the others run 14 tokens
    order = [index for index, _ in generation.generate_stream(model, tokenizer, backwards, max_new_tokens=14, slots=5)]
    assert order == [4, 0, 1, 2, 3]  # a short answer comes back first


def test_continuous_batching_without_a_shared_prefix_and_with_sampling(tiny_model):
    model, tokenizer = _random_model(tiny_model)
    prompts = [f"{q} Answer:" for q in QUESTIONS]  # no common start: plain left padding
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert generation._common_prefix_length(rows) == 0
    alone = [generate_texts(model, tokenizer, [p], max_new_tokens=9)[0] for p in prompts]
    assert dict(generation.generate_stream(model, tokenizer, prompts, max_new_tokens=9, slots=2)) == dict(enumerate(alone))

    sampled = [dict(generation.generate_stream(model, tokenizer, prompts, 9, slots=2, temperature=1.0, seed=s)) for s in (3, 3, 4)]
    assert sampled[0] == sampled[1] != sampled[2]  # seeded
    assert sampled[0] != dict(enumerate(alone))
    nucleus = dict(generation.generate_stream(model, tokenizer, prompts, 9, slots=2, temperature=1.0, top_p=1e-9, seed=5))
    assert nucleus == dict(enumerate(alone))  # a vanishing nucleus keeps only the most likely token: greedy


def test_models_with_sliding_window_layers_fall_back_to_plain_batches(tiny_model):
    from transformers import MistralConfig, MistralForCausalLM

    _, tokenizer = load_causal_lm(str(tiny_model))
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()
    prompts = _prompts(tokenizer)
    streamed = dict(generation.generate_stream(model, tokenizer, prompts, max_new_tokens=6, slots=2))
    batches = generate_texts(model, tokenizer, prompts[:2], 6) + generate_texts(model, tokenizer, prompts[2:4], 6)
    assert streamed == dict(enumerate(batches + generate_texts(model, tokenizer, prompts[4:], 6)))
