"""The toy world: 32x32 RGB scenes of simple shapes with six independent factors, and captions naming some.

Every scene draws each factor uniformly and independently:

| factor | values |
| --- | --- |
| shape | circle, square, triangle, cross |
| color | red, orange, yellow, green, blue, purple |
| size | small (radius 3.5-4.5 px), large (radius 6-7 px) |
| position | left, center, right: the column the objects stand in (x = 8, 16, 24 px, jittered by 1 px) |
| background | dark, gray, light |
| count | one, two (two objects share shape, colour and size and stack vertically in the column) |

Free within a scene and never named: the vertical placement, a 1 px horizontal jitter, the exact radius, and a
small jitter of every colour. A caption names each factor with some probability, so one caption fits many
scenes: "a shape", "a red circle", "two small squares on the left on a dark background". In this toy language
the article "a" fixes nothing: "a circle" is one or two circles; only "one"/"two" or a plural noun fix the count.

**Mode coverage** counts the factors in `MODE_FACTORS` (shape x colour x position): factors a 32 px classifier
predicts near-perfectly and that change what a sample looks like at a glance (its composition). A prompt allows
every combination of them that agrees with the factors it names (`allowed_modes`). Size, background and count
are left out so that the number of modes of an open prompt stays comparable to a few dozen samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

import numpy as np

from ..core.errors import UserError, did_you_mean

IMAGE_SIZE = 32
# Raise when a change to `render` changes the pixels of a scene: cached toy reference statistics (`fid
# reference=toy`) are keyed by it (and by this file's bytes, which catches a forgotten bump).
RENDERER_VERSION = 1

FACTORS: dict[str, list[str]] = {
    "shape": ["circle", "square", "triangle", "cross"],
    "color": ["red", "orange", "yellow", "green", "blue", "purple"],
    "size": ["small", "large"],
    "position": ["left", "center", "right"],
    "background": ["dark", "gray", "light"],
    "count": ["one", "two"],
}
MODE_FACTORS = ("shape", "color", "position")


def factor_value(text: str, key: str, bare: bool = True) -> tuple[str, str]:
    """(factor, value) a setting names: `factor=value` ("color=red"), or (`bare`) a value alone ("red"). A wrong
    one is one line naming what is wrong: no such factor, a value of another factor, a misspelt value."""
    factor, sep, value = text.partition("=")
    if sep and factor in FACTORS and value in FACTORS[factor]:
        return factor, value
    if not sep and bare:
        value = text
        owners = [name for name, values in FACTORS.items() if value in values]
        if owners:
            return owners[0], value
    everything = [v for values in FACTORS.values() for v in values]
    owner = {v: name for name, values in FACTORS.items() for v in values}
    if sep and factor not in FACTORS:
        if factor in owner:  # `red=`, `circle=red`: a value where its factor goes
            example = f"{owner[value]}={value}" if value in owner else f"{owner[factor]}={factor}"
            raise UserError(f"{key}={text}: '{factor}' is a {owner[factor]} value, not a factor; give {key}={example}")
        near = did_you_mean(factor, FACTORS) or ";"
        raise UserError(f"{key}={text}: '{factor}' is no toy factor{near} the factors: {', '.join(FACTORS)}")
    if sep:
        elsewhere = f" ('{value}' is a {owner[value]} value)" if value in owner else ""
        near = did_you_mean(value, FACTORS[factor]) or ";"
        raise UserError(
            f"{key}={text}: '{value}' is no {factor} value{elsewhere}{near} {factor}: {', '.join(FACTORS[factor])}"
        )
    if not bare:
        example = f"{owner[text]}={text}" if text in owner else "color=red"  # no `=`: the text is a value
        raise UserError(f"{key}={text}: give factor=value, e.g. {key}={example}")
    known = "; ".join(f"{name}: {', '.join(values)}" for name, values in FACTORS.items())
    raise UserError(f"{key}={text} is not a value of a toy factor{did_you_mean(value, everything)} ({known})")


# How often a caption names each factor; "a shape" (nothing named) comes up about 1 caption in 70.
NAME_PROBABILITY = {"shape": 0.6, "color": 0.5, "size": 0.35, "position": 0.4, "background": 0.35, "count": 0.35}

PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses", "shape": "shapes"}
POSITION_PHRASES = {"left": "on the left", "center": "in the center", "right": "on the right"}
# Every word a caption can hold; the tokenizer gives each its own token.
VOCABULARY = sorted(
    {"a", "on", "in", "the", "background", "shape", *PLURALS.values()}
    | {word for values in FACTORS.values() for word in values}
)

COLORS_RGB = np.array(
    [[220, 40, 40], [245, 140, 30], [240, 220, 40], [40, 180, 60], [50, 90, 235], [150, 60, 200]], dtype=np.float32
)
BACKGROUND_GRAY = np.array([30, 125, 220], dtype=np.float32)
COLOR_JITTER = 12.0
COLUMN_X = np.array([8.0, 16.0, 24.0])
RADIUS = {"small": (3.5, 4.5), "large": (6.0, 7.0)}
SUPERSAMPLE = 2  # anti-aliasing: shapes are drawn at 2x and averaged down


@dataclass
class ToyDataset:
    images: np.ndarray  # (n, H, W, 3) uint8
    captions: list[str]
    labels: dict[str, np.ndarray]  # factor -> (n,) int index into FACTORS[factor]
    named: dict[str, np.ndarray]  # factor -> (n,) bool: does the caption name it

    def __len__(self) -> int:
        return len(self.captions)


def generate_dataset(n: int, seed: int) -> ToyDataset:
    """n scenes with uniformly drawn factors and a caption for each; the same (n, seed) gives the same data."""
    rng = np.random.default_rng(seed)
    labels = sample_labels(rng, n)
    images = render(labels, rng)
    named = sample_named(rng, n)
    captions = [caption(labels, named, i) for i in range(n)]
    return ToyDataset(images, captions, labels, named)


def sample_labels(rng: np.random.Generator, n: int, fixed: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Factor indices for n scenes: uniform, except the factors in `fixed` (factor -> value index)."""
    fixed = fixed or {}
    return {
        factor: np.full(n, fixed[factor]) if factor in fixed else rng.integers(0, len(values), n)
        for factor, values in FACTORS.items()
    }


def sample_named(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Which factors each caption names (independently, with NAME_PROBABILITY)."""
    return {factor: rng.random(n) < NAME_PROBABILITY[factor] for factor in FACTORS}


def caption(labels: dict[str, np.ndarray], named: dict[str, np.ndarray], i: int) -> str:
    """The caption of scene i naming the factors marked in `named`."""
    value = {factor: FACTORS[factor][labels[factor][i]] for factor in FACTORS}
    words = [value["count"] if named["count"][i] else "a"]
    for factor in ("size", "color"):
        if named[factor][i]:
            words.append(value[factor])
    noun = value["shape"] if named["shape"][i] else "shape"
    words.append(PLURALS[noun] if named["count"][i] and value["count"] == "two" else noun)
    if named["position"][i]:
        words.append(POSITION_PHRASES[value["position"]])
    if named["background"][i]:
        words.append(f"on a {value['background']} background")
    return " ".join(words)


def words_outside(prompt: str) -> list[str]:
    """The words of `prompt` the toy language does not have ("hexagon", "big"): the judge cannot check them, so a
    prompt of them alone asks for nothing it can see (every image adheres)."""
    return [word for word in re.findall(r"[a-z]+", prompt.lower()) if word not in VOCABULARY]


def parse_prompt(prompt: str) -> dict[str, int]:
    """The factors a caption fixes (factor -> value index). Words outside the toy language are ignored; a plural
    noun without a number means two. Two values of one factor are an error."""
    words = re.findall(r"[a-z]+", prompt.lower())
    singular = {plural: noun for noun, plural in PLURALS.items()}
    found: dict[str, set[str]] = {}
    for word in words:
        if word in singular:
            if word != "shapes":
                found.setdefault("shape", set()).add(singular[word])
            found.setdefault("count", set()).add("two")
            continue
        for factor, values in FACTORS.items():
            if word in values:
                found.setdefault(factor, set()).add(word)
    clashes = {factor: sorted(values) for factor, values in found.items() if len(values) > 1}
    if clashes:
        factor, values = next(iter(clashes.items()))
        raise UserError(f"prompt '{prompt}' names two values of {factor} ({' and '.join(values)}); name one")
    return {factor: FACTORS[factor].index(next(iter(values))) for factor, values in found.items()}


def render_prompt_samples(prompt: str, n: int, seed: int) -> np.ndarray:
    """n ground-truth scenes for a caption: its named factors fixed, every other factor uniform. (n, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    return render(sample_labels(rng, n, parse_prompt(prompt)), rng)


def allowed_modes(prompt: str) -> list[tuple]:
    """The combinations of MODE_FACTORS values (names, in MODE_FACTORS order) that a caption allows."""
    fixed = parse_prompt(prompt)
    choices = [[FACTORS[f][fixed[f]]] if f in fixed else FACTORS[f] for f in MODE_FACTORS]
    return list(product(*choices))


def render(labels: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Draw the scenes of `labels`; the free details (placement, radius, colour jitter) come from rng."""
    n = len(labels["shape"])
    size = IMAGE_SIZE * SUPERSAMPLE
    coords = (np.arange(size, dtype=np.float32) + 0.5) / SUPERSAMPLE
    ys, xs = coords[:, None], coords[None, :]
    background = BACKGROUND_GRAY[labels["background"]][:, None] + rng.uniform(-COLOR_JITTER, COLOR_JITTER, (n, 3))
    colors = COLORS_RGB[labels["color"]] + rng.uniform(-COLOR_JITTER, COLOR_JITTER, (n, 3))
    low = np.where(labels["size"] == 0, RADIUS["small"][0], RADIUS["large"][0])
    high = np.where(labels["size"] == 0, RADIUS["small"][1], RADIUS["large"][1])
    radius = rng.uniform(low, high)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(n):
        mask = np.zeros((size, size), dtype=bool)
        for cx, cy in _centers(rng, labels["position"][i], labels["count"][i], radius[i]):
            mask |= _shape_mask(labels["shape"][i], xs - cx, ys - cy, radius[i])
        # The supersampled mask averages down to per-pixel coverage: anti-aliased edges.
        cover = mask.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(1, 3))[..., None]
        pixels = cover * colors[i] + (1 - cover) * background[i]
        images[i] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return images


def _centers(rng: np.random.Generator, position: int, count: int, radius: float) -> list[tuple[float, float]]:
    # One object anywhere in its column; two objects one in each half, so they never overlap.
    spans = [(0.0, float(IMAGE_SIZE))] if count == 0 else [(0.0, IMAGE_SIZE / 2), (IMAGE_SIZE / 2, float(IMAGE_SIZE))]
    margin = radius + 0.5
    return [
        (COLUMN_X[position] + rng.uniform(-1.0, 1.0), rng.uniform(top + margin, max(top + margin, bottom - margin)))
        for top, bottom in spans
    ]


def _shape_mask(shape: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    name = FACTORS["shape"][shape]
    if name == "circle":
        return dx**2 + dy**2 <= r**2
    if name == "square":  # a little smaller than the circle's box, so the two cover similar areas
        return (ax <= 0.85 * r) & (ay <= 0.85 * r)
    if name == "triangle":  # pointing up: apex at -r, base at +0.8 r, as wide as it is tall
        return (dy <= 0.8 * r) & (2 * ax <= (dy + r) * 1.1)
    # cross: two bars a third of the radius thick on each side of the centre line
    return ((ax <= r) & (ay <= r / 3)) | ((ay <= r) & (ax <= r / 3))
