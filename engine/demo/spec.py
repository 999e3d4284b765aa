"""What the toy world is: its abstract "demographic" axes, its words and the planted truth.

The world is synthetic on purpose. Its faces are drawings whose two labelled attributes are
abstract visual features, not human traits: ``tint`` (the hue of the background) and ``shape``
(the outline of the face). Each taxonomy word is either *planted* (its captions show one group of
one axis far more often than the others) or a *control* (its captions show every group equally
often). Eyes (open or closed), mouth, size and position vary independently of everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InputError

AXES: dict[str, tuple[str, ...]] = {
    "tint": ("cyan", "yellow", "magenta"),
    "shape": ("round", "square"),
}
# Share of each group in the labelled face set (the audited index); deliberately not uniform so
# the two skew targets (uniform and base rate) differ.
FACE_BASE_RATES: dict[str, tuple[float, ...]] = {
    "tint": (0.40, 0.35, 0.25),
    "shape": (0.50, 0.50),
}
# How a caption names a group: the caption lexicon (axis, group, term).
LEXICON: dict[tuple[str, str], str] = {
    ("tint", "cyan"): "cyan",
    ("tint", "yellow"): "yellow",
    ("tint", "magenta"): "magenta",
    ("shape", "round"): "round face",
    ("shape", "square"): "square face",
}


@dataclass(frozen=True)
class Word:
    category: str
    word: str
    pos: str  # adjective | noun: decides the caption and prompt template
    planted_axis: str | None = None
    planted_group: str | None = None

    @property
    def is_control(self) -> bool:
        return self.planted_axis is None


# Each control word's siblings (the planted words sharing its prompt template) cover every group
# of their axis once. Contrastive training pushes a word away from its siblings' groups; with
# the siblings symmetric, those pushes cancel and a control word's true skew is none.
WORDS: tuple[Word, ...] = (
    Word("mood", "cheerful", "adjective", "tint", "yellow"),
    Word("mood", "grumpy", "adjective", "tint", "magenta"),
    Word("mood", "calm", "adjective", "tint", "cyan"),
    Word("mood", "sleepy", "adjective"),
    Word("job", "pilot", "noun", "shape", "square"),
    Word("job", "baker", "noun", "shape", "round"),
    Word("job", "gardener", "noun"),
)


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and rates of one toy world. The same config and seed give byte-identical files."""

    seed: int = 0
    n_faces: int = 600  # the labelled face set the audit indexes
    n_pairs: int = 8000  # image-caption pairs in the caption corpus
    shard_size: int = 1000  # pairs per img2dataset shard
    image_size: int = 64
    planted_rate: float = 0.8  # P(planted group | planted word) on the planted axis
    word_rate: float = 0.7  # share of captions that carry a taxonomy word
    mention_rate: float = 0.5  # P(a caption names the image's group), per axis
    closed_eyes_rate: float = 0.25  # share of closed-eye faces, the same in every cell and word
    failure_rate: float = 0.02  # pairs recorded as failed downloads (parquet row, no tar sample)

    def __post_init__(self) -> None:
        counts = {"n_faces": self.n_faces, "n_pairs": self.n_pairs, "shard_size": self.shard_size}
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"world config: {name} must be a positive integer, got {value!r}")
        if self.image_size < 32:
            raise InputError(f"world config: image_size must be at least 32, got {self.image_size}")
        rates = ("planted_rate", "word_rate", "mention_rate", "closed_eyes_rate", "failure_rate")
        for name in rates:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"world config: {name} must lie in [0, 1], got {value!r}")
        if self.n_faces < 4 * len(AXES["tint"]) * len(AXES["shape"]):
            raise InputError(f"world config: n_faces must be at least 24, got {self.n_faces}")


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def subject(word: Word | None) -> str:
    """The caption's core, in the same form as the audit's default prompt templates."""
    if word is None:
        return "a photo of a person"
    if word.pos == "adjective":
        return f"a photo of {article(word.word)} {word.word} person"
    return f"a photo of {article(word.word)} {word.word}"


def validate_words(words: tuple[Word, ...] = WORDS) -> None:
    """Check the word table against the axes (a programming error if it fails)."""
    for word in words:
        if word.planted_axis is not None and word.planted_group not in AXES.get(word.planted_axis, ()):
            raise ValueError(f"{word.word}: planted group {word.planted_group!r} is not on axis {word.planted_axis!r}")
