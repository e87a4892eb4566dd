"""Prompt weights as ComfyUI writes them (model/text/weights.py): parsing, errors, and what a weight
does to the text states, on the tiny model. (Equality with ComfyUI's own CLIP Text Encode: the host
test test_prompt_weights_mean_what_comfyuis_clip_text_encode_makes_of_them.)"""

import pytest
import torch

from model.errors import InputError
from model.pipeline import load_pipeline
from model.sample import run
from model.text.encoders import chunk_runs, prompt_runs
from model.text.weights import parse_weights

PLAIN = "a cat on a sofa"


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.mark.parametrize("prompt, segments", [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat) sits", [("a ", 1.0), ("cat", 1.1), (" sits", 1.0)]),
    ("((cat))", [("cat", pytest.approx(1.21))]),
    ("(cat:1.5)", [("cat", 1.5)]),
    ("((cat:1.5))", [("cat", 1.5)]),  # a number replaces the outer weight, as in ComfyUI
    ("((cat):0.5)", [("cat", pytest.approx(0.55))]),
    ("(a (b:2) c:0.5) d", [("a ", 0.5), ("b", 2.0), (" c", 0.5), (" d", 1.0)]),
    ("(time: noon)", [("time: noon", pytest.approx(1.1))]),  # not a number: text at 1.1
    ("(:1.2)", [(":1.2", pytest.approx(1.1))]),
    ("(cat: 1.2 )", [("cat", 1.2)]),
    ("(cat:-1)", [("cat", -1.0)]),
    ("a \\(cat\\) x", [("a (cat) x", 1.0)]),
    ("(a \\(b\\):1.3)", [("a (b)", 1.3)]),
    ("x(y)z", [("x", 1.0), ("y", pytest.approx(1.1)), ("z", 1.0)]),
    ("a () b", [("a ", 1.0), (" b", 1.0)]),
    ("", []),
])
def test_parsing(prompt, segments):
    assert parse_weights(prompt) == segments


@pytest.mark.parametrize("prompt, message", [
    ("a cat)", "unbalanced ')' at character 6"),
    ("a (cat", "unclosed '(' at character 3"),
    ("((cat) dog", "unclosed '(' at character 1"),
    ("a \\(cat)", "unbalanced ')' at character 8"),
    ("(cat:inf)", "weight 'inf' at character 6 is not a finite number"),
    ("(cat:nan)", "not a finite number"),
    ("(cat:12)", "weight '12' at character 6 is outside -10..10"),
    ("(" * 26 + "cat" + ")" * 26, "nest to weight 10.8"),
])
def test_malformed_weights_name_the_prompt_and_character(prompt, message):
    with pytest.raises(InputError, match="^negative_prompt: ") as error:
        parse_weights(prompt, "negative_prompt")
    assert message in str(error.value)


def test_weight_one_in_parentheses_is_the_plain_prompt_bit_for_bit(pipe):
    plain = pipe.text.encode(PLAIN)
    for prompt in ("a (cat:1.0) on a sofa", "(a cat on a sofa:1)", "a cat (on:1.0) a sofa"):
        same = pipe.text.encode(prompt)
        assert torch.equal(same.context, plain.context) and torch.equal(same.pooled, plain.pooled), prompt


def test_a_weight_moves_only_its_tokens_states_from_the_empty_prompts(pipe):
    text = pipe.text
    plain, empty = text.encode(PLAIN), text.encode("")
    weighted = text.encode("a (cat:1.5) on a (sofa:0)")
    # Tokens (one a character in the tiny byte vocabulary) and their positions after the start token.
    tokens = [token for run in prompt_runs(text.tokenizer, "a (cat:1.5) on a (sofa:0)") for token in run]
    weights = [weight for _, weight in tokens]
    assert [i for i, _ in tokens] == [i for run in prompt_runs(text.tokenizer, PLAIN) for i, _ in run]
    at = {w: [1 + i for i, x in enumerate(weights) if x == w] for w in (1.0, 1.5, 0.0)}
    assert len(at[1.5]) == len(text.tokenizer("cat", add_special_tokens=False).input_ids) and at[0.0]
    changed = (weighted.context != plain.context).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == sorted(at[1.5] + at[0.0])
    for weight in (1.5, 0.0):
        rows = at[weight]
        expected = (plain.context[0, rows] - empty.context[0, rows]) * weight + empty.context[0, rows]
        assert torch.allclose(weighted.context[0, rows], expected, atol=1e-6)
    assert (weighted.context[0, at[1.5]] - plain.context[0, at[1.5]]).abs().max() > 1e-2
    assert torch.equal(weighted.pooled, plain.pooled)  # ComfyUI leaves the pooled embedding unweighted
    # Every chunk of a long prompt is weighed against the one empty chunk, position by position:
    # token 80 ("x", after 80 "y" tokens) is the second chunk's 6th prompt token.
    long, long_plain = text.encode("y " * 80 + "(x:2)"), text.encode("y " * 80 + "x")
    assert long.chunks == 2 and (long.context != long_plain.context).any(-1)[0].nonzero().flatten().tolist() == [83]
    expected = (long_plain.context[0, 83] - empty.context[0, 6]) * 2 + empty.context[0, 6]
    assert torch.allclose(long.context[0, 83], expected, atol=1e-6)


def test_chunks_are_laid_out_as_comfyui_lays_them_out():
    def sizes(*runs):
        return [len(chunk) for chunk in chunk_runs([[(0, weight)] * count for count, weight in runs])]

    assert sizes((160, 1.0)) == [75, 75, 10]  # one run (no parentheses): every 75 tokens, as before
    assert sizes((70, 1.0), (7, 1.5)) == [70, 7]  # a run of under 8 tokens is not split: the next chunk
    assert sizes((70, 1.0), (8, 1.5)) == [75, 3]  # a longer one is split where the chunk fills
    assert sizes((75, 1.0), (3, 1.5)) == [75, 3] and sizes() == [0] and sizes((0, 1.0)) == [0]
    chunks = chunk_runs([[(1, 1.0)] * 70, [(2, 1.5)] * 7])
    assert chunks[1] == [(2, 1.5)] * 7


def test_bad_weights_are_refused_by_each_entry_point(pipe, tiny_model_dir, tmp_path, capsys):
    with pytest.raises(InputError, match=r"^prompt: unclosed '\(' at character 3"):
        pipe("a (cat", frames=2, width=64, height=64, steps=1)
    with pytest.raises(InputError, match=r"^negative_prompt: weight 'inf'"):
        pipe.encode(PLAIN, "(blurry:inf)")
    with pytest.raises(InputError, match=r"^prompts: keyframe 4: unbalanced '\)' at character 4"):
        pipe(prompts={0: PLAIN, 4: "dog)"}, frames=5, width=64, height=64, steps=1)
    out = tmp_path / "never.mp4"
    assert run(["--model", str(tiny_model_dir), "--prompt", "a (cat:1,2", "--out", str(out)]) != 0
    assert "--prompt: unclosed '(' at character 3" in capsys.readouterr().err and not out.exists()
    assert run(["--model", str(tiny_model_dir), "--negative-prompt", "blurry)", "--out", str(out)]) != 0
    assert "--negative-prompt: unbalanced ')'" in capsys.readouterr().err and not out.exists()


def test_training_captions_keep_their_parentheses_as_text(pipe):
    literal = pipe.text.encode("a (cat", chunks=1, weighted=False)  # no error: parentheses are text
    assert torch.equal(literal.context, pipe.text.encode("a \\(cat").context)
