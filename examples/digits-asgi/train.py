"""Train a digit classifier on scikit-learn's bundled 8x8 digits; save it as model.json.

Runs in about a second and needs no download: ``python train.py`` (``--c 0.05`` gives a
different model, e.g. for a second version). Only training needs scikit-learn: the
model is saved as its weights, so serving needs numpy alone and the image stays small.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def main() -> None:
    """Fit, report the held-out accuracy, write the model beside this script."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("model.json"))
    args = parser.parse_args()
    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0
    )
    model = LogisticRegression(C=args.c, max_iter=2000)
    model.fit(train_x, train_y)
    weights = {
        "classes": model.classes_.tolist(),
        "coef": model.coef_.round(8).tolist(),
        "intercept": model.intercept_.round(8).tolist(),
        "trained_with": {"C": args.c, "accuracy": round(float(model.score(test_x, test_y)), 4)},
    }
    args.out.write_text(json.dumps(weights) + "\n")
    print(f"accuracy {model.score(test_x, test_y):.3f} on {len(test_y)} held-out digits")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
