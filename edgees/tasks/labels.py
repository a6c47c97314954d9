"""A file of labels: which answer sets are labels, the labels reward, and the metrics that show a collapse.

A `jsonl:` file (match=exact) whose answers are 2 to MAX_LABELS distinct strings, each used
MIN_PER_LABEL times on average, is a classification. Its held-out metrics add macro_f1 (the F1 of
exact labels per label, averaged: one label for every message cannot pass 2/(K+1)/K), and its
reward=labels reward is label_rewards(): the right label's log-likelihood plus its log-softmax
among the labels.
"""

from __future__ import annotations

import math
from typing import Sequence

from edgees.tasks.base import mean

MAX_LABELS = 20     # more distinct answers than this: answers, not labels
MIN_PER_LABEL = 3   # fewer lines a distinct answer on average: answers that happen to repeat


def label_set(answers: Sequence[str | None]) -> list[str] | None:
    """The labels of a file whose answers (normalised as strict matching compares them; None for an
    answer that is not one string) are a small label set, sorted; None when they are not."""
    if not answers or any(a is None for a in answers):
        return None
    labels = sorted(set(answers))
    if not 2 <= len(labels) <= MAX_LABELS or len(answers) < MIN_PER_LABEL * len(labels):
        return None
    return labels


def label_log_probs(scores: Sequence[float], labels: Sequence[str], golds: Sequence[str]) -> list[float]:
    """log P(gold | message) among the labels, per example: scores holds each label's log-likelihood
    after each message (example-major, labels in order); a log-softmax over each example's row. 0 when
    the model gives all the probability to the right label, log(1/K) when it cannot tell them apart."""
    k = len(labels)
    if len(scores) != k * len(golds):
        raise ValueError(f"label_log_probs: {len(scores)} scores for {len(golds)} examples x {k} labels")
    out = []
    for i, gold in enumerate(golds):
        row = scores[i * k:(i + 1) * k]
        top = max(row)
        out.append(row[labels.index(gold)] - top - math.log(sum(math.exp(x - top) for x in row)))
    return out


def label_rewards(scores: Sequence[float], labels: Sequence[str], golds: Sequence[str]) -> list[float]:
    """reward=labels per example: the right label's log-likelihood plus its label_log_probs(). The
    log-probability among the labels alone is blind to how likely the labels are at all: a model
    that makes every label less likely alike keeps it, and a run on it (docs/results/support-triage.md)
    stopped answering with labels. The likelihood keeps the answers on the labels; the other term
    makes the right one win over the rest."""
    k = len(labels)
    shares = label_log_probs(scores, labels, golds)
    return [scores[i * k + labels.index(gold)] + share for i, (gold, share) in enumerate(zip(golds, shares))]


def macro_f1(golds: Sequence[str], predictions: Sequence[str | None]) -> float:
    """F1 per label averaged over the labels that occur as a gold answer or a prediction (None: the
    completion is no label). A label's F1 is 2tp / (2tp + fp + fn): a label predicted for everything
    has full recall and poor precision, and every label never predicted scores 0."""
    labels = sorted(set(golds) | {p for p in predictions if p is not None})
    if not labels:
        return float("nan")
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(golds, predictions))
        wrong = sum((g == label) != (p == label) for g, p in zip(golds, predictions))  # fp + fn
        scores.append(2 * tp / (2 * tp + wrong))
    return mean(scores)


def label_counts(labels: Sequence[str], golds: Sequence[str], predictions: Sequence[str | None]) -> list[dict]:
    """Per label: held-out examples with it (n), of those answered exactly with it (right), and how
    often it was the answer at all (answered); a last row for answers that are no label."""
    rows = [{"label": label, "n": sum(g == label for g in golds),
             "right": sum(g == p == label for g, p in zip(golds, predictions)),
             "answered": sum(p == label for p in predictions)} for label in labels]
    return rows + [{"label": None, "n": 0, "right": 0, "answered": sum(p is None for p in predictions)}]
