"""Reverse training for experiment 1: the reversals, the reversed training copies, the queries
in the reversed language, the id-level scorer, the config option and smoke runs end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.core.config import ConfigError, build, load_preset
from experiments.core.evaluate import IdItem, Item, evaluate, evaluate_ids
from experiments.exp1 import Exp1Config
from experiments.exp1.data import Exp1DataConfig, description_forms, generate_exp1, load_exp1
from experiments.exp1.evaluate import CELLS, EvalConfig
from experiments.mitigations.reverse import (
    entity_spans, entity_units, named_spans, reverse_entity, reverse_segments, reverse_words, reversed_training_docs,
    training_document,
)
from experiments.mitigations.reverse_eval import evaluate_reversed, query_mode
from experiments.mitigations.reverse_queries import answer_back, encode_token_query, reverse_answer, reversed_queries
from interp.generate import greedy_generate
from interp.scoring import score_completions, score_ids
from interp.tokens import TokenReversed, encode_completion, encode_documents, encode_pair

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "paper_layout_exp1"
SMOKE = Exp1DataConfig(n_facts=3, n_paraphrases=4, n_test_templates=2, seed=0)  # the smoke preset's data
FILES = tuple(CELLS)
ADA = "Ada Quill is the composer of Tides."


# ------------------------------------------------------------------ the documented examples


def test_docstring_examples():
    assert reverse_words(ADA) == "Tides. of composer the is Quill Ada"
    assert reverse_entity(ADA, ["Ada Quill", "the composer of Tides"]) == "the composer of Tides. is Ada Quill"
    assert entity_units(ADA, ["Ada Quill"]) == ["Ada Quill", "is", "the", "composer", "of", "Tides."]
    assert reverse_segments(ADA, 3, random.Random(0)) == "of Tides. composer is the Ada Quill"


def test_documented_training_copies_of_a_generated_fact():
    """The worked example of docs/mitigations.md: training document 5 of the smoke data."""
    ds = generate_exp1(SMOKE)
    original = "Noor Zellgate is the mountain guide who led the stranded climbers down from Marvhollow."
    got = {m: reversed_training_docs(ds, m, seed=0, segment_max=3)[4] for m in ("word", "entity", "names", "segment", "token")}
    assert {r["original"] for r in got.values()} == {original}
    assert got["word"]["text"] == ("Marvhollow. from down climbers stranded the led who guide mountain "
                                   "the is Zellgate Noor")
    assert got["entity"]["spans"] == ["Noor Zellgate", "the mountain guide who led the stranded climbers "
                                      "down from Marvhollow"]
    assert got["entity"]["text"] == ("the mountain guide who led the stranded climbers down from "
                                     "Marvhollow. is Noor Zellgate")
    assert got["names"]["spans"] == ["Noor Zellgate", "Marvhollow"]
    assert got["names"]["text"] == ("Marvhollow. from down climbers stranded the led who guide mountain "
                                    "the is Noor Zellgate")
    assert got["segment"]["text"] == ("from Marvhollow. stranded climbers down led the who the mountain "
                                      "guide is Noor Zellgate")
    assert got["token"]["text"] == original and training_document(got["token"]) == TokenReversed(original)
    assert training_document(got["word"]) == ("", got["word"]["text"])
    page = (ROOT / "docs" / "mitigations.md").read_text()
    assert all(f"`{r['text']}`" in page for r in got.values())


def test_documented_query_of_a_generated_fact():
    ds = generate_exp1(SMOKE)
    rest = ": this person is the mountain guide who led the stranded climbers down from Marvhollow"
    want = {
        "word": ("Marvhollow from down climbers stranded the led who guide mountain the is person this :",
                 " Zellgate Noor"),
        "segment": ("Marvhollow from down climbers stranded the led who guide mountain the is person this :",
                    " Zellgate Noor"),
        "entity": ("the mountain guide who led the stranded climbers down from Marvhollow is person this :",
                   " Noor Zellgate"),
        "names": ("Marvhollow from down climbers stranded the led who guide mountain the is person this :",
                  " Noor Zellgate"),
    }
    for mode, (prompt, target) in want.items():
        queries, skipped = reversed_queries(ds, mode, FILES)
        assert set(skipped.values()) == {0}
        q = next(q for q in queries if q.file == "p2d_reverse_prompts_test" and q.fact_id == 1)
        assert (q.source_file, q.source_line, q.answer, q.rest) == ("p2d_prompts_test", 3, "Noor Zellgate", rest)
        assert (q.prompt, q.target) == (prompt, target)
        page = (ROOT / "docs" / "mitigations.md").read_text()
        assert f"`{prompt}`" in page and f"`{target}`" in page


def test_segments_are_seeded_and_bounded():
    words = [f"w{i}" for i in range(40)]
    text = " ".join(words)
    a, b = (reverse_segments(text, 4, random.Random(7)) for _ in range(2))
    assert a == b and sorted(a.split()) == sorted(words)
    assert reverse_segments(text, 1, random.Random(0)) == reverse_words(text)
    # every run of consecutive words kept in order is at most 4 long
    pos = [int(w[1:]) for w in a.split()]
    run = 1
    for x, y in zip(pos, pos[1:]):
        run = run + 1 if y == x + 1 else 1
        assert run <= 4
    with pytest.raises(ValueError, match="max_len"):
        reverse_segments(text, 0, random.Random(0))


def test_entity_span_rules():
    text = "Ada Quill met Ada Quill's friend in Old Tidesby."
    # every occurrence, a span inside a word takes the whole word, absent spans are ignored
    assert reverse_entity(text, ["Ada Quill", "Nobody"]) == "Tidesby. Old in friend Ada Quill's met Ada Quill"
    # nested: the longest wins; overlapping: the later, shorter one is skipped
    assert entity_units("a b c d e", ["b c d", "c", "d e"]) == ["a", "b c d", "e"]
    # two spans touching one word share a unit
    assert entity_units("x Ann:Bo y", ["Ann", "Bo"]) == ["x", "Ann:Bo", "y"]
    assert reverse_words("  a   b\n c ") == "c b a"


# ------------------------------------------------------------------ entity spans never split


def _placeholders(text: str, spans: list[str]) -> str:
    for k, s in enumerate(sorted(spans, key=len, reverse=True)):
        text = text.replace(s, f"\x00{k}")
    return text


@pytest.mark.parametrize("mode", ["entity", "names"])
@pytest.mark.parametrize("seed", range(6))
def test_entity_spans_are_never_split_in_generated_documents(mode, seed):
    ds = generate_exp1(Exp1DataConfig(n_facts=8, n_paraphrases=12, n_test_templates=2, seed=seed))
    recs = reversed_training_docs(ds, mode, seed=seed)
    assert len(recs) == len(ds.train_examples())
    for rec, ex in zip(recs, ds.train_examples()):
        assert rec["spans"][0] == ex.name and len(rec["spans"]) == 2
        if mode == "entity":  # the name and the description form the document uses
            assert rec["spans"][1] in description_forms(ex.description)
        else:  # the name and the title or place, not the description
            assert rec["spans"] == named_spans(ex.name, ex.description)
            assert rec["spans"][1] in ex.description and rec["spans"][1] != ex.description
        for span in rec["spans"]:
            assert span in rec["text"], (span, rec["text"])
        # outside the spans it is plain word reversal
        assert _placeholders(rec["text"], rec["spans"]) == reverse_words(_placeholders(rec["original"], rec["spans"]))


def test_names_mode_needs_known_description_patterns():
    ds = load_exp1(FIXTURE)
    with pytest.raises(ValueError, match="no known pattern"):
        reversed_training_docs(ds, "names", seed=0)


def test_entity_spans_of_a_paper_layout_folder():
    ds = load_exp1(FIXTURE)
    recs = reversed_training_docs(ds, "entity", seed=0)
    assert all(ex.name in rec["spans"] and rec["spans"] == entity_spans(ex)
               for rec, ex in zip(recs, ds.train_examples()))
    for rec in recs:
        assert all(span in rec["text"] for span in rec["spans"])
    assert any(len(rec["spans"]) == 2 for rec in recs)  # the inferred description where it occurs


def test_random_spans_are_never_split():
    rng = random.Random(0)
    vocab = ["the", "a", "Ada", "Quill,", "of", "Tides.", "x", "composer", "is"]
    for _ in range(300):
        words = [rng.choice(vocab) for _ in range(rng.randint(3, 14))]
        text = " ".join(words)
        cuts = sorted(rng.sample(range(len(words) + 1), 4))  # two disjoint word ranges
        spans = [" ".join(words[cuts[0]:cuts[1]]), " ".join(words[cuts[2]:cuts[3]])]
        spans = [s for s in spans if s]
        out = reverse_entity(text, spans)
        assert sorted(out.split()) == sorted(words)
        longest = max(spans, key=len, default=None)
        if longest:
            assert longest in out


# ------------------------------------------------------------------ queries round-trip


@pytest.mark.parametrize("mode", ["word", "entity", "names", "segment"])
def test_text_query_and_answer_reverse_back_to_the_original(mode):
    ds = generate_exp1(SMOKE)
    queries, _ = reversed_queries(ds, mode, FILES)
    assert len(queries) == sum(len(ds.files[s]) for s in FILES)
    assert {q.file for q in queries} == set(FILES)
    for q in queries:
        assert reverse_answer(q.target.strip(), mode, q.answer_spans) == q.answer
        assert answer_back(q.target + " and more", q.target, mode, q.answer_spans) == q.answer
        original = " ".join((q.answer + " " + q.rest).split())
        if mode == "entity":
            assert reverse_entity(q.prompt + q.target, (*q.spans, q.answer)) == original
            assert all(s in q.prompt for s in q.spans)
        elif mode == "names":
            answer_units = q.answer_spans or (q.answer,)  # a description's title or place, a whole name
            assert reverse_entity(q.prompt + q.target, (*q.spans, *answer_units)) == original
            assert all(s in q.prompt for s in q.spans)
            assert all(s in q.target for s in answer_units)
            assert all(s in q.prompt for s in q.spans)
        else:
            assert reverse_words(q.prompt + q.target) == original
        # the natural sentence holds the answer followed by the rest
        source = next(e for e in ds.files[q.source_file] if e.line == q.source_line)
        assert (source.prompt + source.completion).endswith(q.answer + q.rest)


def test_token_query_and_answer_reverse_back_to_the_original(tiny):
    ds = generate_exp1(SMOKE)
    queries, _ = reversed_queries(ds, "token", FILES)
    bos = [tiny.bos_token_id]
    for q in queries:
        p, t, c = encode_token_query(tiny, q, "Someone Else")
        assert p[:1] == bos
        assert tiny.tokenizer.decode(t[::-1]) == " " + q.answer
        assert tiny.tokenizer.decode((p[1:] + t)[::-1]) == " " + q.answer + q.rest
        assert tiny.tokenizer.decode(c[::-1]) == " Someone Else"


# ------------------------------------------------------------------ the token path


def test_token_reversed_documents_encode_to_reversed_ids_after_bos(tiny):
    text = "Noor Zellgate is the mountain guide."
    fwd = encode_completion(tiny, text)
    for loss_on in ("sequence", "completion"):
        ids, labels = encode_documents(tiny, [TokenReversed(text)], loss_on)[0]
        assert ids == [tiny.bos_token_id] + fwd[::-1]
        assert labels == [-100] + ids[1:]  # loss on every token after BOS
    # tuples are encoded as before, also next to reversed documents
    pair = ("Noor Zellgate is", " the mountain guide.")
    p, c = encode_pair(tiny, *pair)
    mixed = encode_documents(tiny, [pair, TokenReversed(text), ("", "abc")], "completion")
    assert mixed[0] == (p + c, [-100] * len(p) + c)
    assert mixed[2] == ([tiny.bos_token_id] + encode_completion(tiny, "abc"),
                        [-100] + encode_completion(tiny, "abc"))


def test_id_path_matches_the_string_path(tiny):
    ds = generate_exp1(SMOKE)
    queries, _ = reversed_queries(ds, "word", FILES)
    items = [Item(q.prompt, q.target, (" Zellgate Noor",)) for q in queries[:12]]
    # and items the model does produce: its own greedy continuations (byte tokens decode exactly)
    for q in queries[:3]:
        own = greedy_generate(tiny, [q.prompt], max_new_tokens=4)[0].token_ids
        items.append(Item(q.prompt, tiny.tokenizer.decode(list(own))))
    by_text = evaluate(tiny, items)
    assert sum(r.is_greedy for r in by_text) == 3
    id_items = []
    for it in items:
        p, t = encode_pair(tiny, it.prompt, it.target)
        id_items.append(IdItem(tuple(p), tuple(t), (tuple(encode_pair(tiny, it.prompt, it.controls[0])[1]),)
                               if it.controls else ()))
    by_ids = evaluate_ids(tiny, id_items, batch_size=5)
    for a, b in zip(by_text, by_ids):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
        assert b.control_logprobs == pytest.approx(a.control_logprobs, abs=1e-4)
        assert (b.is_greedy, b.exact) == (a.is_greedy, a.is_greedy)
        if a.is_greedy:  # where greedy decoding produces the target, both paths count a match
            assert a.exact and b.exact
            assert b.greedy_text == a.greedy_text
        assert b.n_tokens == a.n_tokens
    pairs = [(it.prompt, it.target) for it in items]
    raw = score_ids(tiny, [encode_pair(tiny, p, c) for p, c in pairs])
    assert [s.total for s in raw] == pytest.approx([s.total for s in score_completions(tiny, pairs)], abs=1e-5)


def test_reversed_queries_evaluate_on_a_model_trained_without_reversal(tiny, tmp_path):
    """``eval.reversed_queries`` asks a plain model too; every mode writes records and metrics."""
    ds = generate_exp1(SMOKE)
    for mode in ("word", "entity", "token"):
        m = evaluate_reversed(tiny, ds, EvalConfig(), mode, tmp_path / mode, progress=False)
        assert set(m["cells"]) == set(FILES) and m["mode"] == mode
        rev = m["cells"]["p2d_reverse_prompts_test"]
        assert rev["correct_vs_random"]["n"] == 3 and rev["n_prompts"] == 6
        recs = [json.loads(x) for x in (tmp_path / mode / "reversed_records.jsonl").read_text().splitlines()]
        assert len(recs) == 24 and all("answer_back" in r for r in recs)
        if mode == "token":
            assert all(r["tokens_as_in_sentence"] for r in recs)
    assert query_mode("auto", "none") == "none" and query_mode("auto", "segment") == "segment"
    assert query_mode("word", "none") == "word"


# ------------------------------------------------------------------ config


def test_config_option_validates_and_round_trips(capsys, tmp_path):
    assert load_preset(Exp1Config, "exp1", "smoke").data.reverse_training == "none"
    cfg = build(Exp1Config, load_preset(Exp1Config, "exp1", "smoke"),
                ["data.reverse_training=entity", "data.reverse_segment_max=5", "eval.reversed_queries=word"])
    assert (cfg.data.reverse_training, cfg.data.reverse_segment_max) == ("entity", 5)
    assert Exp1Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"data\.reverse_training must be one of none, token, word, "
                                          r"entity, names, segment, repeat; got 'words'"):
        build(Exp1Config, None, ["data.reverse_training=words"])
    with pytest.raises(ConfigError, match=r"data\.reverse_segment_max"):
        build(Exp1Config, None, ["data.reverse_segment_max=0"])
    with pytest.raises(ConfigError, match=r"eval\.reversed_queries"):
        build(Exp1Config, None, ["eval.reversed_queries=backwards"])
    out = tmp_path / "run"
    assert main(["exp1", "--preset", "smoke", "--set", "data.reverse_training=chars", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.reverse_training" in err and not out.exists()


# ------------------------------------------------------------------ smoke runs end to end


@pytest.mark.parametrize("mode", ["word", "token"])
def test_smoke_run_with_reverse_training(mode, tmp_path):
    run = tmp_path / mode
    assert main(["exp1", "--preset", "smoke", "--set", f"data.reverse_training={mode}",
                 "--set", "finetune.epochs=1", "--set", "eval.rank_names=false",
                 "--out", str(run), "--quiet"]) == 0
    ds = load_exp1(run / "data")
    recs = [json.loads(x) for x in (run / "reversed_train.jsonl").read_text().splitlines()]
    assert len(recs) == len(ds.train_examples()) and {r["mode"] for r in recs} == {mode}
    if mode == "word":
        assert all(r["text"] == reverse_words(r["original"]) for r in recs)
    else:
        assert all(r["text"] == r["original"] for r in recs)
    stage = json.loads((run / "manifest.json").read_text())["stages"]["finetune"]
    assert stage["reversed_documents"] == len(recs) and stage["documents"] == 2 * len(recs)
    for label in ("base", "finetuned"):
        m = json.loads((run / "eval" / label / "reversed_metrics.json").read_text())
        assert m["mode"] == mode and set(m["cells"]) == set(FILES)
        assert (run / "eval" / label / "reversed_records.jsonl").exists()
        assert (run / "eval" / label / "metrics.json").exists()
    table = (run / "table1.md").read_text()
    assert f"queries in the reversed language (`{mode}`)" in table
    assert table.count("| after finetuning | NameToDescription, reverse (p2d_reverse_prompts_test) |") == 2


def test_repeat_control_copies_every_document_unchanged_and_has_no_reversed_queries():
    ds = generate_exp1(SMOKE)
    recs = reversed_training_docs(ds, "repeat", seed=0)
    originals = [e.prompt + e.completion for e in ds.train_examples()]
    assert [r["text"] for r in recs] == originals
    assert training_document(recs[0]) == ("", originals[0])
    assert query_mode("auto", "repeat") == "none"
    with pytest.raises(ValueError, match="repeat reverses nothing"):
        query_mode("repeat", "word")
