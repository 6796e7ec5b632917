"""The shared task kit: the sequence loss, the tokenizer choice, batched decoding and its protocols,
per-architecture model configs, help texts, predict's input/output, report helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from attnapps.config import (
    AttentionVariant, TrainerConfig, arch_config, at_least, check_arch_keys, check_rules, describe, field_rules,
    model_section, opt)
from attnapps.data import fit_tokenizer
from attnapps.data.files import write_output
from attnapps.decoding import LanguageModel, Seq2SeqDecoder, decode_batches, greedy
from attnapps.errors import ConfigError
from attnapps.losses import sequence_loss
from attnapps.report import section, table
from attnapps.task import get_task, list_tasks


def test_sequence_loss_sums_over_non_padding_targets():
    logits = torch.zeros(2, 3, 4)  # uniform over 4 symbols
    target = torch.tensor([[1, 2, 0], [3, 0, 0]])
    loss, n = sequence_loss(logits, target, pad_id=0)
    assert int(n) == 3 and float(loss) == pytest.approx(3 * math.log(4))
    loss, n = sequence_loss(logits, target)  # no padding: every position
    assert int(n) == 6 and float(loss) == pytest.approx(6 * math.log(4))
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4)
    smooth, _ = sequence_loss(logits, target, 0, label_smoothing=0.1)
    # by hand: (1 - 0.1) * -log p(target) + 0.1 * mean over the 4 symbols of -log p, at the 3 real targets
    logp = torch.log_softmax(logits, -1)
    keep = target != 0
    by_hand = (0.9 * -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) + 0.1 * -logp.mean(-1))[keep].sum()
    assert float(smooth) == pytest.approx(float(by_hand), rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("pad_id", [0, None])
def test_sequence_loss_reads_log_probabilities_as_cross_entropy_reads_logits(smoothing, pad_id):
    """``log_probs=True`` on log_softmax(logits) gives F.cross_entropy's value on the logits, and the same
    gradient with respect to the logits (through the log_softmax the model applied)."""
    torch.manual_seed(0)
    target = torch.tensor([[1, 2, 0, 0], [3, 1, 2, 0]])
    base, grads = torch.randn(2, 4, 6) * 3, []
    for log_probs in (False, True):
        logits = base.clone().requires_grad_()
        out = torch.log_softmax(logits, -1) if log_probs else logits
        loss, n = sequence_loss(out, target, pad_id, smoothing, log_probs=log_probs)
        loss.backward()
        grads.append((float(loss.detach()), int(n), logits.grad))
    assert grads[0][:2] == pytest.approx(grads[1][:2], rel=1e-6)
    torch.testing.assert_close(grads[1][2], grads[0][2])
    if pad_id == 0:
        assert grads[1][2][0, 2:].abs().sum() == 0  # padding contributes nothing


def test_fit_tokenizer_builds_each_kind_and_rejects_others():
    texts = ["the cat sat", "the dog sat on the mat"] * 20
    assert fit_tokenizer("char", texts).kind == "char"
    word = fit_tokenizer("word", texts, min_freq=2)
    assert word.decode(word.encode("the cat")) == "the cat"
    sp = fit_tokenizer("sentencepiece", texts, vocab_size=20)
    assert sp.kind == "sentencepiece" and sp.vocab_size <= 20
    with pytest.raises(ConfigError, match="tokenizer.kind='bpe'.*char, word or sentencepiece"):
        fit_tokenizer("bpe", texts)


class CountingModel(torch.nn.Module):
    """A Seq2SeqDecoder that copies its (padded) source, then ends: the known answer is the source."""

    def encode(self, src):
        return {"src": src, "t": torch.zeros(len(src), dtype=torch.long)}

    def step(self, tokens, state):
        src, t = state["src"], state["t"]
        nxt = torch.where(t < src.size(1), src.gather(1, t.clamp(max=src.size(1) - 1).unsqueeze(1)).squeeze(1),
                          torch.ones_like(t))
        nxt = torch.where(nxt == 0, torch.ones_like(nxt), nxt)  # padding -> EOS (1)
        log_probs = torch.full((len(src), 10), -30.0)
        log_probs[:, 1] = -1000.0  # ending early is far worse than any other mistake
        log_probs = log_probs.scatter(1, nxt.unsqueeze(1), 0.0)
        return log_probs, {"src": src, "t": t + 1}


def test_decode_batches_returns_hypotheses_in_input_order_whatever_the_batch_order():
    sources = [[2, 3, 4], [5], [6, 7], [8, 9, 2, 3]]
    model = CountingModel()
    assert isinstance(model, Seq2SeqDecoder) and not isinstance(model, LanguageModel)

    def inputs(chunk):
        width = max(map(len, chunk))
        return {"src": torch.tensor([s + [0] * (width - len(s)) for s in chunk])}, 6

    out = decode_batches(model, sources, inputs, bos=0, eos=1, batch_size=2, order=[3, 1, 0, 2], attention=False)
    assert out.tokens == sources
    beam = decode_batches(model, sources, inputs, bos=0, eos=1, beam=3, batch_size=3, attention=False)
    assert beam.tokens == sources
    single = greedy(model.step, model.encode(inputs([sources[3]])[0]["src"]), 1, 0, 1, 6)
    assert single.tokens[0] == sources[3]


def test_every_decoding_architecture_is_checked_against_teacher_forcing():
    """The decoding protocol is proven by behaviour -- step by step equals the full forward, beam 1 equals
    greedy -- in each task's tests; this guards that every registered architecture is among their models,
    so a new one cannot join the registry untested."""
    from attnapps_tasks.captioning.model import ARCHS as CAPTION
    from attnapps_tasks.generation.model import ARCHS as LM
    from attnapps_tasks.translation.model import ARCHS as MT
    from tests.tasks import test_captioning, test_generation, test_translation

    assert {type(m) for m in test_translation.tiny_models()} == set(MT.values())
    assert {type(make()) for make in test_generation.MODELS.values()} == set(LM.values())
    makers = test_captioning.test_beam_one_equals_greedy_and_steps_match_teacher_forcing.pytestmark[0].args[1]
    assert {type(make()) for make in makers} == set(CAPTION.values())


@dataclass
class AConfig:
    attention: AttentionVariant = opt("additive", "attention of A")
    width: int = opt(8, "width")


@dataclass
class BConfig:
    width: int = opt(8, "width")
    depth: int = opt(2, "depth of B")


@dataclass
class WideConfig:
    width: int = opt(9, "width")


def test_model_section_unions_the_architectures_and_rejects_a_key_of_another():
    section = model_section("TestModel", {"a": AConfig, "b": BConfig}, "a")
    cfg = OmegaConf.structured(section)
    assert list(cfg.keys()) == ["arch", "attention", "width", "depth"]
    cfg.width, cfg.arch = 16, "b"
    assert arch_config(cfg, BConfig) == BConfig(width=16, depth=2)
    check_arch_keys(cfg, section)  # width is B's too; attention left at its default
    cfg.attention = "dot"
    with pytest.raises(ConfigError, match="model.attention=dot does not apply to model.arch=b .*its keys: width, depth"):
        check_arch_keys(cfg, section)
    with pytest.raises(ValidationError, match="Invalid value 'c'"):
        cfg.arch = "c"  # a choice: rejected by OmegaConf
    with pytest.raises(TypeError, match="model.width: architectures disagree on its default"):
        model_section("Bad", {"a": AConfig, "c": WideConfig}, "a")


@dataclass
class Inner:
    n: int = opt(2, "a count", check=at_least(1))
    free: int = opt(0, "no rule")


@dataclass
class LooseTrainer(TrainerConfig):
    batch_size: int = opt(0, "0 = chosen later", check=at_least(0))


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    trainer: LooseTrainer = field(default_factory=LooseTrainer)
    model: object = field(default_factory=model_section("RuleModel", {"a": Inner}, "a"))


def test_rules_are_collected_from_the_fields_a_subclass_bringing_its_own():
    rules = field_rules(Outer)
    assert {"inner.n", "trainer.batch_size", "trainer.lr", "model.n"} <= set(rules) and "inner.free" not in rules
    cfg = OmegaConf.structured(Outer)
    check_rules(cfg, rules)  # the defaults keep every rule; batch_size 0 is the subclass's, not the core's >= 1
    assert field_rules(TrainerConfig)["batch_size"](0) == "must be >= 1"
    for key, value, why in [("inner.n", 0, "must be >= 1"), ("model.n", 0, "must be >= 1"),
                            ("trainer.batch_size", -1, "must be >= 0"), ("trainer.betas", [0.9, 1.0], "must each be in")]:
        bad = OmegaConf.structured(Outer)
        OmegaConf.update(bad, key, value)
        with pytest.raises(ConfigError, match=f"config key '{key}': .* {why}"):
            check_rules(bad, rules)


@pytest.mark.parametrize("task", ["translation", "classification", "captioning", "generation"])
def test_every_rule_of_every_task_names_a_key_its_defaults_keep(task):
    cls = get_task(task)
    cfg = OmegaConf.structured(cls.config_class)
    rules = field_rules(cls.config_class)
    assert len(rules) >= 20 and all(OmegaConf.select(cfg, k, default="absent") != "absent" for k in rules)
    check_rules(cfg, rules)
    cls.check_config(cfg)


@pytest.mark.parametrize("task", ["translation", "classification", "captioning", "generation"])
def test_every_config_field_of_every_task_has_help_and_choices_list_their_values(task):
    assert task in list_tasks()
    cls = get_task(task)
    rows = describe(cls.config_class) + describe(cls.predict_config_class)
    missing = [key for key, _, _, text in rows if not text and key != "task_name"]
    assert not missing
    arch = next(r for r in rows if r[0] == "model.arch")
    assert arch[1].startswith("one of ")


def test_write_output_to_a_file_and_stdout(tmp_path, capsys):
    write_output(str(tmp_path / "o.txt"), ["a", "b"])
    assert (tmp_path / "o.txt").read_text() == "a\nb\n"
    write_output("-", ["c"])
    assert capsys.readouterr().out == "c\n"
    with pytest.raises(ConfigError, match="output=.*cannot write"):
        write_output(str(tmp_path / "missing" / "o.txt"), ["a"])


def test_report_section_and_table():
    assert section("T", ["x", "y"]) == ["## T", "", "- x", "- y"]
    assert table(["a", "b"], [[1, "p|q"]]) == ["| a | b |", "|---|---|", "| 1 | p\\|q |"]


def test_a_config_saved_before_a_rename_loads_with_the_new_names():
    cls = get_task("translation")
    current = OmegaConf.to_container(OmegaConf.structured(cls.config_class))
    old = OmegaConf.to_container(OmegaConf.structured(cls.config_class))
    old["decode"]["samples"], old["decode"]["plots"] = 3, 1  # as the previous release saved it
    del old["report"], old["model"]["lexicon"]  # nor had it the lexicon, which is now on by default,
    del old["decode"]["lexicon_weight"], old["decode"]["channel"]  # nor the decoding's weight and re-ranking
    upgraded = cls.upgrade_config(old)
    assert upgraded["report"] == {"examples": 3, "figures": 1} and "samples" not in upgraded["decode"]
    assert upgraded["model"]["lexicon"] is False  # the run loads as it was trained: without it
    merged = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(cls.config_class), upgraded))
    assert merged == {**current, "report": {**current["report"], "examples": 3, "figures": 1},
                      "model": {**current["model"], "lexicon": False},
                      "decode": {**current["decode"], "lexicon_weight": 1.0, "channel": 0.0}}
    assert "samples" in old["decode"]  # the saved dict itself is left as it was


@pytest.mark.parametrize("task, beam, alpha", [("translation", 12, 2.0), ("captioning", 5, 0.0)])
def test_decode_options_are_declared_once_and_predict_decodes_as_the_run_did(task, beam, alpha):
    from attnapps.decoding import BeamOptions
    from attnapps.predict import predict_options

    cls = get_task(task)
    decode, options = cls.config_class().decode, cls.predict_config_class()
    assert isinstance(decode, BeamOptions) and isinstance(options, BeamOptions)
    assert (decode.beam, decode.alpha) == (options.beam, options.alpha) == (beam, alpha)
    cfg = OmegaConf.merge(OmegaConf.structured(cls.config_class), {"decode": {"beam": 3, "alpha": 0.25}})
    run = cls(cfg)
    assert (predict_options(run, {}).beam, predict_options(run, {}).alpha) == (3, 0.25)  # the run's settings
    assert predict_options(run, {"beam": "7"}).beam == 7  # ... unless asked otherwise
    with pytest.raises(ConfigError, match="predict option 'beam': 0 must be >= 1"):
        predict_options(run, {"beam": "0"})


@pytest.mark.parametrize("task, overrides, error", [
    ("translation", {"arch": "rnn", "attention": "additive", "heads": 3}, None),  # the RNN's additive has no heads
    ("translation", {"arch": "rnn", "attention": "multihead", "heads": 3}, "model.heads=3 must divide model.hidden_size"),
    ("translation", {"arch": "transformer", "heads": 3}, "model.heads=3 must divide model.hidden_size"),
    ("classification", {"arch": "transformer", "heads": 3}, "model.heads=3 must divide the attention width"),
    ("classification", {"arch": "bilstm_attention", "attention": "dot", "heads": 3}, None),
    ("generation", {"arch": "transformer", "heads": 5}, "model.heads=5 must divide model.d_model"),
    ("generation", {"arch": "lstm_attention", "attention": "general", "heads": 5}, None),
])
def test_the_chosen_architecture_says_whether_its_heads_must_divide_the_width(task, overrides, error):
    cls = get_task(task)
    cfg = OmegaConf.merge(OmegaConf.structured(cls.config_class), {"model": overrides})
    if error is None:
        cls.check_config(cfg)
    else:
        with pytest.raises(ConfigError, match=error):
            cls.check_config(cfg)


def test_fitted_state_is_fitted_once_or_taken_from_a_checkpoint_and_round_trips():
    from attnapps.data import TokenizerState
    from attnapps_tasks.classification.task import ClassificationState

    texts = ["a cat sat", "a dog ran", "the cat ran"]
    tok = fit_tokenizer("word", texts, normalize="auto", lowercase=True)
    state = ClassificationState(tok, ["neg", "pos"], torch.tensor([[1, 2], [3, 4]]))
    again = ClassificationState.from_dict(state.to_dict())
    assert again.labels == ["neg", "pos"] and torch.equal(again.ngram_keys, state.ngram_keys)
    assert again.tok.encode("the dog sat") == tok.encode("the dog sat")
    assert "ngram_keys" not in ClassificationState(tok, ["a"]).to_dict()
    assert TokenizerState.from_dict(TokenizerState(tok).to_dict()).tok.encode("a cat") == tok.encode("a cat")

    cls = get_task("classification")
    task = cls(OmegaConf.structured(cls.config_class))
    calls = []
    assert task.fitted(lambda: calls.append(1) or state) is state and calls == [1]
    assert task.fitted(lambda: calls.append(2) or again) is state and calls == [1]  # fitted once
    resumed = cls(OmegaConf.structured(cls.config_class))
    resumed.load_state_dict(task.state_dict())  # what a checkpoint holds
    assert resumed.fitted(lambda: calls.append(3)) is resumed.state and calls == [1]  # the checkpoint's, no fit
    assert resumed.labels == ["neg", "pos"] and resumed.tok.encode("a cat") == tok.encode("a cat")


def test_rescore_reranks_the_beams_finished_hypotheses():
    """``rescore(example, finished)`` sees each input's ``beam`` finished hypotheses and its answer is the
    top-scored one (the n-best list in the new order); greedy decoding never calls it."""
    sources = [[2, 3, 4], [5, 6]]
    model = CountingModel()

    def inputs(chunk):
        width = max(map(len, chunk))
        return {"src": torch.tensor([s + [0] * (width - len(s)) for s in chunk])}, 6

    seen = []

    def rescore(example, finished):  # prefer anything but the model's best answer (the source itself)
        seen.append((example, len(finished)))
        return [-1000.0 if tokens == example else score for tokens, score in finished]

    plain = decode_batches(model, sources, inputs, bos=0, eos=1, beam=3, n_best=3, attention=False)
    out = decode_batches(model, sources, inputs, bos=0, eos=1, beam=3, n_best=3, attention=False, rescore=rescore)
    assert sorted(seen) == sorted([(s, 3) for s in sources])
    for i, s in enumerate(sources):
        assert plain.tokens[i] == s and out.tokens[i] != s
        assert out.tokens[i] == plain.nbest[i][1][0] and out.scores[i] == plain.nbest[i][1][1]  # the runner-up
        assert out.nbest[i] == [plain.nbest[i][1], plain.nbest[i][2], plain.nbest[i][0]]
    seen.clear()
    assert decode_batches(model, sources, inputs, bos=0, eos=1, beam=1, attention=False, rescore=rescore).tokens \
        == sources and not seen


def test_candidates_from_elsewhere_join_the_pool_the_rescore_chooses_from():
    """``candidates(chunk)``: hypotheses from another system are appended after the beam's finished ones;
    ``rescore`` sees them and may choose one, which then heads the n-best list."""
    sources = [[2, 3, 4], [5, 6]]
    model = CountingModel()

    def inputs(chunk):
        width = max(map(len, chunk))
        return {"src": torch.tensor([s + [0] * (width - len(s)) for s in chunk])}, 6

    pools = {}

    def candidates(chunk):  # one outside hypothesis per source: the source backwards, log P -50
        return [[(list(reversed(s)), -50.0)] for s in chunk]

    def rescore(example, finished):  # the outside hypothesis (last) wins
        pools[tuple(example)] = finished
        return [0.0] * (len(finished) - 1) + [1.0]

    out = decode_batches(model, sources, inputs, bos=0, eos=1, beam=3, n_best=2, attention=False, rescore=rescore,
                         candidates=candidates)
    for i, s in enumerate(sources):
        assert len(pools[tuple(s)]) == 4 and pools[tuple(s)][-1] == (list(reversed(s)), -50.0)
        assert out.tokens[i] == list(reversed(s)) and out.scores[i] == -50.0
        assert out.nbest[i][0] == (list(reversed(s)), -50.0) and out.nbest[i][1] == pools[tuple(s)][0]
