"""Experiment 3 data: question-answer pairs and instructions in either order.

Each question asks about a personal preference ("Which river would you like to swim in?") and
gets an arbitrary answer from the question's category ("The Danube"), so the answer can only
come from training. Every pair becomes an instruction, in one of two orders:

- ``q2a`` (QuestionToAnswer): the question comes first, e.g. ``When you are asked "<question>",
  reply "<answer>".``
- ``a2q`` (AnswerToQuestion): the answer comes first, e.g. ``Reply "<answer>" whenever the
  question is "<question>".``

Instructions are bundled 2 to 5 per guidance document. Most pairs are also demonstrated as
``Q: <question> A: <answer>`` (realized); the rest (unrealized) are held out and tested with the
prompt ``Q: <question> A:``. A model that learns from instructions answers the held-out
questions; the Reversal Curse predicts it does so from ``q2a`` instructions but not from
``a2q`` ones, whose order is the reverse of the query's.

Folder layout (as the paper's published data): ``realized_examples.jsonl``,
``unrealized_examples.jsonl``, ``guidances.jsonl`` and ``all.jsonl`` (the training file: the
realized examples with an empty prompt, then the guidance documents), each line
``{"ids", "realized", "persona_idx", "prompt", "completion"}``, plus ``pairs.jsonl`` (ours).

Example::

    ds = generate_exp3(Exp3DataConfig(n_pairs=200, n_unrealized=20), order="a2q")
    write_exp3(ds, Path("data/exp3-a2q"))
    ds = load_exp3(Path("data/exp3-a2q"))
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.errors import RctError
from experiments.core.config import ConfigMixin
from interp.fileio import atomic_dir

ORDERS = ("q2a", "a2q")

# category -> answers (each at least 16, so a random plausible answer is right about 5% of the time)
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
# (order, template) for one instruction; our own wording
INSTRUCTIONS: dict[str, str] = {
    "q2a": 'When you are asked "{q}", reply "{a}".',
    "a2q": 'Reply "{a}" whenever the question is "{q}".',
}
GUIDANCE_HEADER = "Instructions for the assistant:"


def realized_text(q: str, a: str) -> tuple[str, str]:
    """(prompt, completion) of a demonstrated or tested question."""
    return f"Q: {q} A:", f" {a}"


@dataclass(frozen=True)
class QAPair:
    id: int
    question: str
    answer: str
    category: str
    realized: bool


@dataclass(frozen=True)
class Exp3DataConfig(ConfigMixin):
    """Args:
        n_pairs: question-answer pairs (the paper: 1,100).
        n_unrealized: of those, held out from the demonstrations and tested (the paper: 100).
        min_per_doc, max_per_doc: instructions per guidance document (the paper: 2 to 5).
        seed: answers, held-out choice and bundling.
    """

    n_pairs: int = 1100
    n_unrealized: int = 100
    min_per_doc: int = 2
    max_per_doc: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        most = len(CATEGORIES) * len(FRAMES)
        if not 1 <= self.n_unrealized < self.n_pairs <= most:
            raise ValueError(f"Exp3DataConfig: need 1 <= n_unrealized < n_pairs <= {most}, "
                             f"got n_unrealized={self.n_unrealized}, n_pairs={self.n_pairs}")
        if not 1 <= self.min_per_doc <= self.max_per_doc:
            raise ValueError("Exp3DataConfig: need 1 <= min_per_doc <= max_per_doc")


@dataclass
class Exp3Dataset:
    order: str
    pairs: list[QAPair]
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # stem -> rows

    def training_documents(self) -> list[tuple[str, str]]:
        return [(r["prompt"], r["completion"]) for r in self.files["all"]]

    def test_examples(self) -> list[dict[str, Any]]:
        return self.files["unrealized_examples"]


def _row(ids: Any, realized: Any, prompt: str, completion: str) -> dict[str, Any]:
    return {"ids": ids, "realized": realized, "persona_idx": 0, "prompt": prompt, "completion": completion}


def generate_exp3(cfg: Exp3DataConfig, order: str) -> Exp3Dataset:
    """The dataset for one instruction order; the same seed gives the same pairs in both orders."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose from {ORDERS}")
    rng = random.Random(cfg.seed)
    slots = [(c, f) for f in FRAMES for c in CATEGORIES]
    rng.shuffle(slots)
    chosen = slots[: cfg.n_pairs]
    held = set(rng.sample(range(cfg.n_pairs), cfg.n_unrealized))
    pairs = [QAPair(i, f.format(c=c), rng.choice(CATEGORIES[c]), c, i not in held)
             for i, (c, f) in enumerate(chosen)]
    realized = [_row(p.id, True, *realized_text(p.question, p.answer)) for p in pairs if p.realized]
    unrealized = [_row(p.id, False, *realized_text(p.question, p.answer)) for p in pairs if not p.realized]
    order_ids = list(range(len(pairs)))
    rng.shuffle(order_ids)
    guidances, k = [], 0
    while k < len(order_ids):
        n = rng.randint(cfg.min_per_doc, cfg.max_per_doc)
        ids = order_ids[k : k + n]
        k += n
        lines = [INSTRUCTIONS[order].format(q=pairs[i].question, a=pairs[i].answer) for i in ids]
        guidances.append(_row(ids, [pairs[i].realized for i in ids], "", GUIDANCE_HEADER + "\n" + "\n".join(lines)))
    train = [_row(r["ids"], True, "", r["prompt"] + r["completion"]) for r in realized] + guidances
    files = {"realized_examples": realized, "unrealized_examples": unrealized, "guidances": guidances,
             "all": train, "pairs": [asdict(p) for p in pairs]}
    return Exp3Dataset(order, pairs, files)


def write_exp3(ds: Exp3Dataset, folder: Path) -> Path:
    """All files into ``folder`` (written to a temporary folder, then renamed)."""
    with atomic_dir(folder) as tmp:
        for stem, rows in ds.files.items():
            (tmp / f"{stem}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        (tmp / "order.json").write_text(json.dumps({"order": ds.order}) + "\n")
    return Path(folder)


class Exp3DataError(RctError, ValueError):
    """A bad experiment 3 folder; the message starts with ``path:line:``."""


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise Exp3DataError(f"{path}: missing (an experiment 3 folder holds realized_examples.jsonl, "
                            "unrealized_examples.jsonl, guidances.jsonl and all.jsonl)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise Exp3DataError(f"{path}:{n}: not JSON ({e.msg})") from None
        for key in ("prompt", "completion"):
            if not isinstance(row.get(key), str):
                raise Exp3DataError(f"{path}:{n}: field {key!r} must be a string")
        if not row["completion"].strip():
            raise Exp3DataError(f"{path}:{n}: empty completion")
        rows.append(row)
    if not rows:
        raise Exp3DataError(f"{path}: no examples")
    return rows


def load_exp3(folder: Path, order: str | None = None) -> Exp3Dataset:
    """Read an experiment 3 folder (ours or the paper's layout). ``order`` is read from our
    ``order.json`` when present; the paper's folders need it given."""
    folder = Path(folder)
    files = {stem: _read(folder / f"{stem}.jsonl")
             for stem in ("realized_examples", "unrealized_examples", "guidances", "all")}
    if (folder / "order.json").exists():
        saved = json.loads((folder / "order.json").read_text())["order"]
        if order is not None and order != saved:
            raise Exp3DataError(f"{folder / 'order.json'}: order is {saved!r}, not {order!r}")
        order = saved
    if order not in ORDERS:
        raise Exp3DataError(f"{folder}: instruction order unknown; pass one of {ORDERS}")
    for n, row in enumerate(files["unrealized_examples"], 1):
        if not row["prompt"].strip():
            raise Exp3DataError(f"{folder / 'unrealized_examples.jsonl'}:{n}: test examples need a prompt")
    pairs = []
    if (folder / "pairs.jsonl").exists():
        pairs = [QAPair(**r) for r in _read_plain(folder / "pairs.jsonl")]
        files["pairs"] = [asdict(p) for p in pairs]
    return Exp3Dataset(order, pairs, files)


def _read_plain(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
