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
