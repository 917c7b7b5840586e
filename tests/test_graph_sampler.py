"""The next token drawn inside the decode graph (graph_sampler, triton_sampling.sample) is the
token `Sampler` would draw: greedy is the first largest logit; top-k / top-p / min-p draws
take the candidate the kernel's own uniform draw selects from `Sampler`'s distribution.

Which replies the kernel serves and what it is told runs everywhere; the kernel runs in
Triton's interpreter where Triton is installed, and on a CUDA GPU (`pytest -m cuda`).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import triton_interpreter

from qwen3tui.engine import graph_sampler
from qwen3tui.engine.graph_sampler import GraphSampler, Kind, kind
from qwen3tui.engine.options import SamplingParams
from qwen3tui.engine.sampler import Sampler

VOCAB = 5000  # three programs of 2,048 logits, the last one partial


def test_greedy_and_short_top_k_lists_are_drawn_in_the_graph():
    assert kind(SamplingParams(temperature=0)) == Kind(1, False)
    assert kind(SamplingParams(temperature=0.6, top_k=20)) == Kind(32, False)
    assert kind(SamplingParams(temperature=0.7, top_k=1)) == Kind(2, False)
    assert kind(SamplingParams(temperature=1.0, top_k=64)) == Kind(64, False)
    assert kind(SamplingParams(temperature=0.6, top_k=20, presence_penalty=1.5)) == Kind(32, True)
    assert kind(SamplingParams(temperature=0, presence_penalty=1.5)) == Kind(1, True)


def test_long_candidate_lists_stay_with_the_sampler():
    assert kind(SamplingParams(temperature=0.6, top_k=0)) is None  # the whole vocabulary
    assert kind(SamplingParams(temperature=0.6, top_k=65)) is None


def test_a_reply_sets_the_parameters_and_the_seeded_stream():
    picker = GraphSampler(VOCAB, torch.device("cpu"), pdl=False)
    params = SamplingParams(temperature=0.5, top_p=0.9, top_k=20, min_p=0.05, seed=1234)
    picker.begin(Sampler(params, VOCAB, torch.device("cpu")))
    assert picker.params.tolist() == pytest.approx([2.0, 0.9, 0.05, 20.0, 0.0])
    assert picker.state.tolist() == [1234, 0]
    picker.begin(Sampler(SamplingParams(temperature=0.7, top_p=1.0, seed=5), VOCAB, "cpu"))
    assert picker.params[1] > 1  # top-p 1 keeps every candidate: the check is off
    assert picker.state.tolist() == [5, 0]


def test_with_a_presence_penalty_the_reply_keeps_one_record_of_the_tokens_seen():
    picker = GraphSampler(VOCAB, torch.device("cpu"), pdl=False)
    sampler = Sampler(SamplingParams(temperature=0, presence_penalty=1.5), VOCAB, "cpu")
    sampler.observe(17)  # drawn before the graph took over
    picker.begin(sampler)
    assert picker.params[4] == 1.5
    assert picker.seen.nonzero().flatten().tolist() == [17]
    sampler.observe(torch.tensor(99))  # the sampler's later draws land in the same record
    assert picker.seen.nonzero().flatten().tolist() == [17, 99]


# -- the kernel ------------------------------------------------------------------------------


def uniform(state: torch.Tensor) -> float:
    """The kernel's uniform draw for `state` (seed, draws so far)."""
    from qwen3tui.engine import triton_sampling

    out = torch.empty(1, device=state.device)
    triton_sampling.next_uniform[(1,)](state, out)
    return float(out)


def sampler_choice(logits: torch.Tensor, params: SamplingParams, u: float) -> int:
    """`Sampler`'s draw from `logits` with its multinomial's uniform draw fixed to `u`."""
    x = logits.float() * (1.0 / params.temperature)
    assert not params.presence_penalty
    values, indices = torch.topk(x, params.top_k)
    probs = torch.softmax(values, dim=-1)
    keep = torch.ones_like(probs, dtype=torch.bool)
    if params.top_p < 1.0:
        keep &= torch.cumsum(probs, dim=-1) - probs < params.top_p
    keep &= probs >= params.min_p * probs[0]
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    below = int((torch.cumsum(kept, dim=-1) <= u * kept.sum()).sum())
    return int(indices[min(below, int(keep.sum()) - 1)])


def draw(picker: GraphSampler, logits: torch.Tensor, params: SamplingParams) -> tuple[int, int]:
    """(token, position after) of one kernel launch at position 41. The host's copy of the
    token is in the mailbox slot of position 42, and the other slot is left alone."""
    token = torch.zeros((1, 1), dtype=torch.long, device=logits.device)
    pos = torch.full((1,), 41, dtype=torch.long, device=logits.device)
    picker.mailbox.fill_(-1)
    picker.draw(logits, token, pos, kind(params))
    assert int(picker.counter) == 0  # set back for the next step
    if logits.is_cuda:
        torch.cuda.synchronize()
    assert picker.mailbox.tolist() == [int(token), -1]
    return int(token), int(pos)


def check_greedy(device: str) -> None:
    picker = GraphSampler(VOCAB, torch.device(device), pdl=False)
    params = SamplingParams(temperature=0)
    picker.begin(Sampler(params, VOCAB, torch.device(device)))
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        logits = torch.randn(VOCAB, device=device).to(dtype)
        assert draw(picker, logits, params) == (int(torch.argmax(logits.float())), 42)
        negative = -logits.float().abs() - 1  # every key's float bits negative
        assert draw(picker, negative, params)[0] == int(torch.argmax(negative))
    tie = torch.zeros(VOCAB, device=device)
    tie[[4100, 10, 2049]] = 3.0  # equal largest logits in all three programs: the first
    assert draw(picker, tie, params)[0] == 10
    last = torch.zeros(VOCAB, device=device)
    last[VOCAB - 1] = 1.0  # in the partial last program
    assert draw(picker, last, params)[0] == VOCAB - 1


CASES = [
    SamplingParams(temperature=0.6, top_p=0.95, top_k=20, seed=1),  # Qwen's thinking defaults
    SamplingParams(temperature=1.0, top_p=1.0, top_k=5, min_p=0.1, seed=2),
    SamplingParams(temperature=0.3, top_p=0.5, top_k=64, seed=3),
    SamplingParams(temperature=0.8, top_p=1.0, top_k=1, seed=4),
]


def check_draws(device: str) -> None:
    torch.manual_seed(1)
    logits = torch.randn(VOCAB, device=device) * 3
    picker = GraphSampler(VOCAB, torch.device(device), pdl=False)
    for params in CASES:
        picker.begin(Sampler(params, VOCAB, torch.device(device)))
        seen = set()
        for step in range(6):
            assert picker.state.tolist() == [params.seed, step]
            u = uniform(picker.state)
            token, pos = draw(picker, logits, params)
            assert (token, pos) == (sampler_choice(logits, params, u), 42), params
            seen.add(token)
        assert picker.state.tolist() == [params.seed, 6]  # one draw a step
        if params.top_k > 1 and params.top_p > 0.9:
            assert len(seen) > 1, params  # the draws differ from step to step


def check_penalty(device: str) -> None:
    """A presence penalty pushes the draws away from the tokens seen, and each draw is seen."""
    three = torch.full((VOCAB,), -30.0, device=device)
    three[4999], three[10], three[2500] = 3.0, 2.5, 2.0  # in all three programs
    picker = GraphSampler(VOCAB, torch.device(device), pdl=False)
    greedy = SamplingParams(temperature=0, presence_penalty=1.0)
    picker.begin(Sampler(greedy, VOCAB, torch.device(device)))
    # 3.0; then 2.5 (the first is now 2.0); then 2,500, at 2.0 as the first and the lower index.
    assert [draw(picker, three, greedy)[0] for _ in range(3)] == [4999, 10, 2500]
    assert picker.seen.nonzero().flatten().tolist() == [10, 2500, 4999]
    sampled = SamplingParams(temperature=0.01, top_k=2, presence_penalty=2.0, seed=3)
    picker.begin(Sampler(sampled, VOCAB, torch.device(device)))
    assert not picker.seen.any()  # a new reply starts afresh
    # At T 0.01 the second of the top two is e^-50 as likely: 4,999, then 10, then 2,500.
    assert [draw(picker, three, sampled)[0] for _ in range(3)] == [4999, 10, 2500]


def check_cuts(device: str) -> None:
    """Top-p and min-p drop the second of two likely tokens, draw after draw (and without the
    cut some of these draws would have picked it)."""
    two = torch.full((VOCAB,), -30.0, device=device)
    two[100], two[4500] = 0.0, -0.5  # probabilities 0.62 and 0.38
    picker = GraphSampler(VOCAB, torch.device(device), pdl=False)
    for params in (
        SamplingParams(temperature=1.0, top_p=0.5, top_k=8, seed=21),  # 0.62 reaches 0.5
        SamplingParams(
            temperature=1.0, top_p=1.0, top_k=8, min_p=0.7, seed=22
        ),  # 0.38 < 0.7 x 0.62
    ):
        picker.begin(Sampler(params, VOCAB, torch.device(device)))
        uncut = replace(params, top_p=1.0, min_p=0.0)
        draws = []
        for _ in range(8):
            u = uniform(picker.state)
            draws.append((draw(picker, two, params)[0], sampler_choice(two, uncut, u)))
        assert {token for token, _ in draws} == {100}, params
        assert 4500 in {uncut_token for _, uncut_token in draws}


def test_greedy_draws_in_the_interpreter():
    triton_interpreter.run_interpreted(__file__, 'check_greedy("cpu")')


def test_top_k_draws_in_the_interpreter():
    triton_interpreter.run_interpreted(__file__, 'check_draws("cpu")')


def test_presence_penalty_draws_in_the_interpreter():
    triton_interpreter.run_interpreted(__file__, 'check_penalty("cpu")')


def test_top_p_and_min_p_cuts_in_the_interpreter():
    triton_interpreter.run_interpreted(__file__, 'check_cuts("cpu")')


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@needs_cuda
def test_greedy_draws_on_cuda():
    check_greedy("cuda")


@pytest.mark.cuda
@needs_cuda
def test_top_k_draws_on_cuda():
    check_draws("cuda")
    check_cuts("cuda")
    check_penalty("cuda")


def test_the_kernel_blocks_cover_qwen3s_vocabulary():
    picker = GraphSampler(151936, torch.device("cpu"), pdl=False)
    assert picker.programs * graph_sampler.BLOCK >= 151936 > (picker.programs - 1) * 2048
    assert picker.parts >= picker.programs and picker.part.numel() >= picker.parts * 64
