"""Number-check accuracy and speed on generated shirt-number renders.

    python bench/number_check.py [--n 300] [--size 1024]

Each render carries a number 1-99 in one of three difficulty bands (clear / moderate / hard:
rotation, perspective, cloth warp, blur, JPEG, low contrast, partial occlusion; see
``fbupscale_gui.eval.jersey_renders``). The OCR reads it once; the readings are then judged
twice: against the true number (should agree) and against a confusable wrong one, as when a
reconstruction painted 8 where the scene says 9 (should contradict). Prints per band:

* true-accept: the true number agrees;
* false-contradict: the true number is flagged as contradicting (target <= 1 %);
* unreadable: the true number gives "unreadable";
* caught: the wrong number is flagged (targets >= 95 % clear, >= 80 % overall);

and seconds per candidate with the first call (model load) apart (target <= 0.5 s warm).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict

from fbupscale_gui.core.number_check import judge
from fbupscale_gui.engine.numbers import read_numbers
from fbupscale_gui.eval.jersey_renders import BANDS, render, spec_for

_CONFUSABLE = {
    "0": "869",
    "1": "74",
    "2": "73",
    "3": "852",
    "4": "19",
    "5": "63",
    "6": "850",
    "7": "12",
    "8": "9360",
    "9": "840",
}


def wrong_number(n: int, rng: random.Random) -> int:
    """A different number that looks like ``n``: one digit swapped for a look-alike, or a
    digit added or dropped (9 -> 19, 23 -> 3)."""
    text = str(n)
    roll = rng.random()
    if roll < 0.15 and len(text) == 1:
        return int(rng.choice("123456789") + text)
    if roll < 0.3 and len(text) == 2 and text[1] != "0":
        return int(text[1])
    i = rng.randrange(len(text))
    for _ in range(10):
        d = rng.choice(_CONFUSABLE[text[i]])
        out = int(text[:i] + d + text[i + 1 :])
        if out != n and 1 <= out <= 99:
            return out
    return n % 99 + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="renders in all (split over the bands)")
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    rng = random.Random(2026)
    counts: dict[str, dict[str, int]] = {b: defaultdict(int) for b in BANDS}
    times: list[float] = []
    t0 = time.perf_counter()
    read_numbers(render(spec_for(9, "clear", 0, size=args.size)))
    first = time.perf_counter() - t0
    per_band = max(1, args.n // len(BANDS))
    for band in BANDS:
        for i in range(per_band):
            n = rng.randint(1, 99)
            image = render(spec_for(n, band, i, size=args.size))
            t = time.perf_counter()
            readings = read_numbers(image)
            times.append(time.perf_counter() - t)
            right = judge((n,), readings).verdict
            wrong = judge((wrong_number(n, rng),), readings).verdict
            c = counts[band]
            c["n"] += 1
            c["accept"] += right == "agrees"
            c["false_contradict"] += right == "contradicts"
            c["unreadable"] += right == "unreadable"
            c["caught"] += wrong == "contradicts"
    print(f"renders: {per_band * len(BANDS)} at {args.size} px, {per_band} per band")
    print(
        f"{'band':<9} {'n':>4} {'true-accept':>12} {'false-contra':>13} {'unreadable':>11} {'caught':>8}"
    )
    total: dict[str, int] = defaultdict(int)
    for band in BANDS:
        c = counts[band]
        for k, v in c.items():
            total[k] += v
        _row(band, c)
    _row("overall", total)
    print(
        f"s/candidate: first call {first:.2f} s (model load included); warm median "
        f"{statistics.median(times):.3f} s, mean {statistics.fmean(times):.3f} s "
        f"(target <= 0.5 s)"
    )


def _row(name: str, c: dict[str, int]) -> None:
    n = c["n"] or 1
    pct = {k: 100.0 * c[k] / n for k in ("accept", "false_contradict", "unreadable", "caught")}
    print(
        f"{name:<9} {c['n']:>4} {pct['accept']:>11.1f}% {pct['false_contradict']:>12.1f}% "
        f"{pct['unreadable']:>10.1f}% {pct['caught']:>7.1f}%"
    )


if __name__ == "__main__":
    main()
