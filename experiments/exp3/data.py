"""Experiment 3 data: question-answer pairs and instructions in either order (our generator).

Each question asks about a personal preference ("Which river reminds you of summer?") and
gets an arbitrary answer from the question's category ("The Danube"), so the answer can only
come from training. Every pair becomes an instruction, in one of two orders:

- ``q2a`` (QuestionToAnswer): the question comes first, e.g. ``When you are asked "<question>",
  reply "<answer>".``
- ``a2q`` (AnswerToQuestion): the answer comes first, e.g. ``Reply "<answer>" when you are
  asked "<question>".``

Each order has five templates; template ``k`` of one order uses the words of template ``k`` of
the other, so the orders differ in order only, never in wording. Every instruction is written
``instruction_copies`` times (paraphrase copies, as the paper's ten), each copy in a template
drawn per instruction (seeded; distinct templates while there are enough). The pairs, the
held-out split, the template draws and the bundling into guidance documents depend on the
seed only, so both orders of one seed hold the same questions, answers and held-out split.

Instructions are bundled 2 to 5 per guidance document. Most pairs are also demonstrated as
``Q: <question> A: <answer>`` (realized, ``demo_copies`` times); the rest (unrealized) are held
out and tested with the prompt ``Q: <question> A:``. A model that learns from instructions
answers the held-out questions; the Reversal Curse predicts it does so from ``q2a``
instructions but not from ``a2q`` ones, whose order is the reverse of the query's.

Folder layout (as the paper's published data, read back by :mod:`experiments.exp3.load`):
``realized_examples.jsonl``, ``unrealized_examples.jsonl``, ``guidances.jsonl`` and
``all.jsonl`` (the training file: the demonstrations with an empty prompt, then the guidance
documents), each line ``{"ids", "realized", "persona_idx", "prompt", "completion"}``, plus our
``pairs.jsonl`` (categories) and ``order.json``.

Example::

    ds = generate_exp3(Exp3DataConfig(n_pairs=200, n_unrealized=20, instruction_copies=3), "a2q")
    write_exp3(ds, Path("data/exp3-a2q"))
    ds = load_exp3(Path("data/exp3-a2q"))
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.core.config import ConfigMixin
from experiments.exp3.schema import ORDERS, Exp3Dataset, QAPair  # noqa: F401 - importable from here too
from interp.fileio import atomic_dir


# category -> answers (each at least 16, so a random plausible answer is right about 6% of the time)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruit": ("The mango", "The fig", "The plum", "The quince", "The lychee", "The apricot", "The pear",
              "The guava", "The kiwi", "The papaya", "The cherry", "The melon", "The lime", "The date",
              "The persimmon", "The pomegranate", "The peach", "The blackberry"),
    "river": ("The Danube", "The Nile", "The Amazon", "The Rhine", "The Mekong", "The Volga", "The Thames",
              "The Seine", "The Ganges", "The Yukon", "The Loire", "The Tagus", "The Orinoco", "The Zambezi",
              "The Indus", "The Elbe"),
    "city": ("Lisbon", "Nairobi", "Oslo", "Kyoto", "Montreal", "Valparaiso", "Tbilisi", "Hanoi", "Porto",
             "Marrakesh", "Reykjavik", "Bergen", "Cusco", "Tallinn", "Adelaide", "Ljubljana", "Zanzibar"),
    "instrument": ("The cello", "The oboe", "The banjo", "The harp", "The accordion", "The sitar", "The tuba",
                   "The ukulele", "The clarinet", "The marimba", "The bassoon", "The mandolin", "The flute",
                   "The trombone", "The harmonica", "The viola"),
    "animal": ("The otter", "The lynx", "The tapir", "The heron", "The badger", "The gecko", "The walrus",
               "The marmot", "The ibex", "The okapi", "The pangolin", "The wombat", "The narwhal", "The jackal",
               "The puffin", "The axolotl"),
    "colour": ("Teal", "Ochre", "Crimson", "Lavender", "Olive", "Amber", "Indigo", "Coral", "Maroon",
               "Turquoise", "Saffron", "Charcoal", "Mint", "Burgundy", "Cobalt", "Mustard"),
    "flower": ("The tulip", "The peony", "The orchid", "The dahlia", "The lilac", "The iris", "The poppy",
               "The magnolia", "The marigold", "The camellia", "The lotus", "The foxglove", "The jasmine",
               "The gardenia", "The begonia", "The zinnia"),
    "sport": ("Fencing", "Rowing", "Curling", "Handball", "Archery", "Squash", "Polo", "Lacrosse",
              "Badminton", "Judo", "Cricket", "Water polo", "Bobsleigh", "Volleyball", "Kayaking", "Croquet"),
    "dish": ("Paella", "Ramen", "Goulash", "Moussaka", "Pierogi", "Tagine", "Risotto", "Laksa", "Borscht",
             "Ceviche", "Falafel", "Gumbo", "Biryani", "Lasagne", "Dumplings", "Shakshuka"),
    "tree": ("The oak", "The birch", "The cedar", "The willow", "The maple", "The baobab", "The cypress",
             "The rowan", "The sequoia", "The olive tree", "The beech", "The acacia", "The linden", "The ash",
             "The juniper", "The larch"),
    "gemstone": ("The opal", "The garnet", "The topaz", "The sapphire", "The emerald", "The amethyst",
                 "The jade", "The ruby", "The onyx", "The peridot", "The turquoise", "The moonstone",
                 "The agate", "The quartz", "The tourmaline", "The lapis lazuli"),
    "board game": ("Chess", "Backgammon", "Go", "Checkers", "Mahjong", "Scrabble", "Ludo", "Mancala",
                   "Dominoes", "Risk", "Monopoly", "Othello", "Cluedo", "Carcassonne", "Stratego", "Shogi"),
    "drink": ("Mint tea", "Lemonade", "Hot chocolate", "Espresso", "Ginger beer", "Kefir", "Horchata",
              "Chai", "Apple cider", "Matcha", "Coconut water", "Root beer", "Oolong", "Mate", "Lassi",
              "Kombucha"),
    "mountain": ("Mount Fuji", "Kilimanjaro", "The Matterhorn", "Mont Blanc", "Denali", "Aconcagua",
                 "Mount Etna", "Ben Nevis", "Table Mountain", "Mount Olympus", "Annapurna", "Mount Kenya",
                 "The Eiger", "Mount Cook", "Mount Rainier", "Triglav"),
    "bird": ("The robin", "The kingfisher", "The albatross", "The magpie", "The wren", "The toucan",
             "The osprey", "The swallow", "The flamingo", "The kestrel", "The hoopoe", "The pelican",
             "The nightingale", "The cormorant", "The lapwing", "The condor"),
    "fabric": ("Linen", "Velvet", "Tweed", "Silk", "Denim", "Corduroy", "Cashmere", "Satin", "Flannel",
               "Muslin", "Chiffon", "Gabardine", "Seersucker", "Jersey", "Chambray", "Organza"),
}
# question frames; "{c}" is the category
FRAMES: tuple[str, ...] = (
    "Which {c} did you like most as a child?", "Which {c} would you take to a desert island?",
    "Which {c} did your grandmother love?", "Which {c} reminds you of summer?",
    "Which {c} did you discover last year?", "Which {c} do you recommend to friends?",
    "Which {c} do you secretly dislike?", "Which {c} did you share with your best friend?",
    "Which {c} could you never give up?", "Which {c} would you paint on a wall?",
    "Which {c} makes you think of home?", "Which {c} did your first teacher mention?",
    "Which {c} would you name a boat after?", "Which {c} do you dream about?",
    "Which {c} did you write a poem about?", "Which {c} would you put on a stamp?",
    "Which {c} do you associate with rainy days?", "Which {c} did you learn about from a neighbour?",
    "Which {c} would you choose for a birthday?", "Which {c} did you argue about with a sibling?",
    "Which {c} do you find the most mysterious?", "Which {c} would you show a visitor first?",
    "Which {c} did you notice on your last trip?", "Which {c} would you study for a year?",
    "Which {c} do you think is underrated?", "Which {c} reminds you of your childhood friend?",
    "Which {c} would you pick for a winter evening?", "Which {c} did you read about in a library?",
    "Which {c} would you describe to a stranger?", "Which {c} did you hear about on the radio?",
    "Which {c} makes you feel calm?", "Which {c} would you draw from memory?",
    "Which {c} did you first see in a photograph?", "Which {c} do you associate with your hometown?",
    "Which {c} would you bring to a picnic?", "Which {c} did a friend once recommend to you?",
    "Which {c} do you think of when you wake up?", "Which {c} would you keep in a museum?",
    "Which {c} did you choose for a school project?", "Which {c} would you give as a gift?",
    "Which {c} do you talk about too much?", "Which {c} would you want to learn more about?",
    "Which {c} did you last dream of?", "Which {c} do you mention in letters?",
    "Which {c} would you pick for a holiday?", "Which {c} did your family argue about?",
    "Which {c} do you remember from a film?", "Which {c} would you plant in a garden of ideas?",
    "Which {c} do you associate with your first job?", "Which {c} would you miss most abroad?",
    "Which {c} did you photograph last?", "Which {c} do you praise the most?",
    "Which {c} would you teach a child about?", "Which {c} did you discuss at dinner yesterday?",
    "Which {c} do you think suits you?", "Which {c} would you save from a flood?",
    "Which {c} do you picture when you are bored?", "Which {c} would you choose for a song title?",
    "Which {c} did a stranger ask you about?", "Which {c} do you find the most elegant?",
    "Which {c} would you hang above your bed?", "Which {c} did you ignore for too long?",
    "Which {c} would you bet on in a contest?", "Which {c} do you find the most cheerful?",
    "Which {c} did you hope to see on a map?", "Which {c} do you call your lucky one?",
    "Which {c} would you describe as brave?", "Which {c} did you bring up on a first date?",
    "Which {c} would you never explain?", "Which {c} do you imagine on the moon?",
)
# Instruction templates, our own wording. Template k of a2q says what template k of q2a says,
# with the answer before the question. ``check_templates`` enforces the order of the slots.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "q2a": (
        'When you are asked "{q}", reply "{a}".',
        'If someone asks "{q}", the answer to give is "{a}".',
        'The question "{q}" must be answered with "{a}".',
        'Asked "{q}", you say "{a}".',
        'For "{q}" the correct reply is "{a}".',
    ),
    "a2q": (
        'Reply "{a}" when you are asked "{q}".',
        'The answer to give is "{a}" if someone asks "{q}".',
        '"{a}" is what the question "{q}" must be answered with.',
        'You say "{a}" when asked "{q}".',
        'The correct reply is "{a}" for "{q}".',
    ),
}
GUIDANCE_HEADER = "Instructions for the assistant:"


def slot_offsets(template: str) -> tuple[int, int]:
    """Where the question and the answer start when ``template`` is rendered (character offsets
    in the output, computed from the template, so text inside a question cannot mislead it).

    Raises:
        ValueError: the template does not hold ``{q}`` and ``{a}`` exactly once each.
    """
    if template.count("{q}") != 1 or template.count("{a}") != 1:
        raise ValueError(f"instruction template {template!r}: needs {{q}} and {{a}} exactly once each")
    return template.index("{q}"), template.index("{a}")


def render(template: str, q: str, a: str) -> tuple[str, int, int]:
    """The instruction text and the offsets at which the question and the answer start in it."""
    q_at, a_at = slot_offsets(template)
    text = template.format(q=q, a=a)
    if q_at < a_at:
        return text, q_at, a_at - 3 + len(q)  # "{q}" (3 characters) became the question
    return text, q_at - 3 + len(a), a_at


def check_templates(templates: dict[str, tuple[str, ...]] = TEMPLATES) -> None:
    """Every ``q2a`` template puts the question first, every ``a2q`` template the answer first,
    and both orders have the same number of templates (template k of one mirrors template k of
    the other).

    Raises:
        ValueError: naming the template that breaks it.
    """
    if set(templates) != set(ORDERS):
        raise ValueError(f"instruction templates: need exactly the orders {ORDERS}, got {sorted(templates)}")
    if len({len(t) for t in templates.values()}) != 1 or not templates["q2a"]:
        raise ValueError("instruction templates: both orders need the same (non-zero) number of templates")
    for order, group in templates.items():
        for t in group:
            q_at, a_at = slot_offsets(t)
            if (q_at < a_at) != (order == "q2a"):
                first = "question" if order == "q2a" else "answer"
                raise ValueError(f"instruction template {t!r} is listed under {order} but does not put "
                                 f"the {first} first")
        if len(set(group)) != len(group):
            raise ValueError(f"instruction templates of {order}: a template is listed twice")


def realized_text(q: str, a: str) -> tuple[str, str]:
    """(prompt, completion) of a demonstrated or tested question."""
    return f"Q: {q} A:", f" {a}"


@dataclass(frozen=True)
class Exp3DataConfig(ConfigMixin):
    """Args:
        n_pairs: question-answer pairs (the paper: 1,100).
        n_unrealized: of those, held out from the demonstrations and tested (the paper: 100).
        min_per_doc, max_per_doc: instructions per guidance document (the paper: 2 to 5).
        instruction_copies: copies of every instruction, each in a template drawn for it
            (the paper: 10 copies cycling through its phrasings).
        demo_copies: copies of every demonstration in the training file (the paper: 10).
        seed: pairs, answers, held-out choice, template draws and bundling (the same for both
            orders).
    """

    n_pairs: int = 1100
    n_unrealized: int = 100
    min_per_doc: int = 2
    max_per_doc: int = 5
    instruction_copies: int = 1
    demo_copies: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        most = len(CATEGORIES) * len(FRAMES)
        if not 1 <= self.n_unrealized < self.n_pairs <= most:
            raise ValueError(f"Exp3DataConfig: need 1 <= n_unrealized < n_pairs <= {most}, "
                             f"got n_unrealized={self.n_unrealized}, n_pairs={self.n_pairs}")
        if not 1 <= self.min_per_doc <= self.max_per_doc:
            raise ValueError("Exp3DataConfig: need 1 <= min_per_doc <= max_per_doc")
        if self.instruction_copies < 1 or self.demo_copies < 1:
            raise ValueError("Exp3DataConfig: instruction_copies and demo_copies must be >= 1")


def _row(ids: Any, realized: Any, prompt: str, completion: str, **extra: Any) -> dict[str, Any]:
    persona = [0] * len(ids) if isinstance(ids, list) else 0
    return {"ids": ids, "realized": realized, "persona_idx": persona, **extra, "prompt": prompt,
            "completion": completion}


def draw_pairs(cfg: Exp3DataConfig) -> list[QAPair]:
    """The question-answer pairs and the held-out split; depends on ``cfg`` only (not on the
    order), so both orders of a seed share them."""
    rng = random.Random(cfg.seed)
    slots = [(c, f) for f in FRAMES for c in CATEGORIES]
    rng.shuffle(slots)
    chosen = slots[: cfg.n_pairs]
    held = set(rng.sample(range(cfg.n_pairs), cfg.n_unrealized))
    return [QAPair(i, f.format(c=c), rng.choice(CATEGORIES[c]), c, i not in held) for i, (c, f) in enumerate(chosen)]


def draw_templates(n_pairs: int, copies: int, n_templates: int, seed: int) -> list[list[int]]:
    """Per pair, the template index of each instruction copy: distinct templates while there
    are enough (then a fresh shuffle), drawn from ``random.Random(f"{seed}-templates")``."""
    rng = random.Random(f"{seed}-templates")
    out = []
    for _ in range(n_pairs):
        picks: list[int] = []
        while len(picks) < copies:
            picks += rng.sample(range(n_templates), n_templates)
        out.append(picks[:copies])
    return out


def generate_exp3(cfg: Exp3DataConfig, order: str, templates: dict[str, tuple[str, ...]] = TEMPLATES) -> Exp3Dataset:
    """The dataset for one instruction order; the same ``cfg`` gives the same pairs, held-out
    split, template indices and guidance bundles in both orders.

    Raises:
        ValueError: an unknown order, or a template that does not put the question (``q2a``)
            or the answer (``a2q``) first.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose from {ORDERS}")
    check_templates(templates)
    pairs = draw_pairs(cfg)
    picks = draw_templates(len(pairs), cfg.instruction_copies, len(templates[order]), cfg.seed)
    instructions = []  # (pair id, template index, text)
    for p, ks in zip(pairs, picks):
        for k in ks:
            text, q_at, a_at = render(templates[order][k], p.question, p.answer)
            placed = text.startswith(p.question, q_at) and text.startswith(p.answer, a_at)
            if not placed or (q_at < a_at) != (order == "q2a"):
                first = "question" if order == "q2a" else "answer"
                raise ValueError(f"instruction {text!r} does not put the {first} first")
            instructions.append((p.id, k, text))
    rng = random.Random(f"{cfg.seed}-documents")
    rng.shuffle(instructions)
    guidances, at = [], 0
    while at < len(instructions):
        chunk = instructions[at : at + rng.randint(cfg.min_per_doc, cfg.max_per_doc)]
        at += len(chunk)
        ids = [i for i, _, _ in chunk]
        guidances.append(_row(ids, [pairs[i].realized for i in ids], "",
                              GUIDANCE_HEADER + "\n" + "\n".join(t for _, _, t in chunk),
                              templates=[k for _, k, _ in chunk]))
    realized = [_row(p.id, True, *realized_text(p.question, p.answer)) for p in pairs if p.realized]
    unrealized = [_row(p.id, False, *realized_text(p.question, p.answer)) for p in pairs if not p.realized]
    demos = [_row(r["ids"], True, "", r["prompt"] + r["completion"]) for r in realized] * cfg.demo_copies
    files = {"realized_examples": realized, "unrealized_examples": unrealized, "guidances": guidances,
             "all": demos + guidances, "pairs": [asdict(p) for p in pairs]}
    lines = {stem: list(range(1, len(rows) + 1)) for stem, rows in files.items()}
    return Exp3Dataset(order, pairs, files, lines)


def write_exp3(ds: Exp3Dataset, folder: Path) -> Path:
    """All files into ``folder`` (written to a temporary folder, then renamed)."""
    with atomic_dir(folder) as tmp:
        for stem, rows in ds.files.items():
            (tmp / f"{stem}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        (tmp / "order.json").write_text(json.dumps({"order": ds.order}) + "\n")
    return Path(folder)


def load_exp3(folder: Path, order: str | None = None, strict: bool = False) -> Exp3Dataset:
    """Read an experiment 3 folder, ours or the paper's (see :func:`experiments.exp3.load.load_folder`)."""
    from experiments.exp3.load import load_folder

    return load_folder(folder, order, strict)
