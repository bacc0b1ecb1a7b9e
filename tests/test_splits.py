"""Split manifests: strategies, stratification, group integrity, hashing, loading, auditing."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mribench.api.errors import DataError
from mribench.api.types import Sample
from mribench.paths import benchmarks_dir
from mribench.split.manifest import (
    Manifest,
    apply,
    audit,
    load_manifest,
    make_split,
    manifest_path,
    resolve_manifest,
    save_manifest,
    split_for,
)

SPLITS = benchmarks_dir() / "splits"


def _samples(labels, groups=None, prefix="s"):
    img = np.zeros((2, 2), np.float32)
    return [Sample(id=f"{prefix}{i:03d}", group=(groups[i] if groups else f"{prefix}{i:03d}"),
                   label=int(lab), image=img) for i, lab in enumerate(labels)]


def _group_parts(manifest, samples):
    part = manifest.part_of()
    out: dict[str, set[str]] = {}
    for s in samples:
        if s.id in part:
            out.setdefault(s.group, set()).add(part[s.id])
    return out


def test_stratified_split_is_stratified_grouped_and_seeded():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.3).astype(int)
    groups = [f"g{i // 3}" if i < 90 else f"s{i}" for i in range(400)]  # 30 triples
    for i in range(0, 90, 3):
        labels[i:i + 3] = labels[i]
    samples = _samples(labels, groups)
    m = make_split("toy", samples, strategy="stratified", seed=0)
    ids = m.train + m.val + m.test
    assert sorted(ids) == sorted(s.id for s in samples)          # a partition
    assert len(set(ids)) == len(ids)
    for part, share in zip(("train", "val", "test"), (0.7, 0.15, 0.15), strict=True):
        assert abs(len(m.parts()[part]) / 400 - share) < 0.02
    rates = {p: np.mean([samples[int(sid[1:])].label for sid in ids_])
             for p, ids_ in m.parts().items()}
    assert max(abs(r - labels.mean()) for r in rates.values()) < 0.02
    assert all(len(p) == 1 for p in _group_parts(m, samples).values())
    assert m.sha256 == make_split("toy", samples, strategy="stratified", seed=0).sha256
    assert m.test != make_split("toy", samples, strategy="stratified", seed=1).test
    assert m.stats["leaks"]["test_in_train_or_val"] == 0


def _official_toy():
    # 12 annotated positives with a published split, one group straddling train and test, one
    # straddling train and val, plus an unannotated member of the train/test group.
    labels = [1] * 14 + [0] * 26
    groups = [f"s{i:03d}" for i in range(40)]
    groups[9] = groups[0]     # s009 (official test) shares s000's group (official train)
    groups[12] = groups[0]    # s012 (no official part) joins that group too
    groups[7] = groups[1]     # s007 (official val) shares s001's group (official train)
    samples = _samples(labels, groups)
    official = {f"s{i:03d}": p for i, p in enumerate(
        ["train"] * 6 + ["val"] * 3 + ["test"] * 3)}
    return samples, official


def test_official_keeps_the_published_parts_even_when_a_group_straddles():
    samples, official = _official_toy()
    m = make_split("toy", samples, official, strategy="official", seed=0)
    part = m.part_of()
    assert all(part[sid] == p for sid, p in official.items())
    assert part["s012"] == "train"      # unannotated member goes to the group's earliest part
    assert m.dropped == ()
    a = audit(m, samples)
    assert a["leaks"]["test_in_train"] == 1 and a["leaks"]["val_in_train"] == 1
    assert a["n_groups_straddling"] == 2


def test_leak_free_drops_the_leaking_images_and_no_group_straddles():
    samples, official = _official_toy()
    m = make_split("toy", samples, official, strategy="leak-free", seed=0)
    assert m.dropped == ("s007", "s009")
    part = m.part_of()
    assert all(part[sid] == p for sid, p in official.items() if sid not in m.dropped)
    assert all(len(p) == 1 for p in _group_parts(m, samples).values())
    a = audit(m, samples)
    assert a["leaks"] == {"test_in_train": 0, "test_in_val": 0, "test_in_train_or_val": 0,
                          "val_in_train": 0}
    assert a["n_unassigned"] == a["n_dropped"] == 2


def test_strategy_errors():
    samples = _samples([0, 1] * 10)
    with pytest.raises(DataError, match="no published split"):
        make_split("toy", samples, strategy="leak-free")
    with pytest.raises(DataError, match="unknown split strategy"):
        make_split("toy", samples, strategy="random")
    with pytest.raises(DataError, match="twice"):
        make_split("toy", samples + samples[:1])


def test_unlabelled_samples_are_not_split():
    samples = _samples([0, 1] * 10 + [-1] * 5)
    m = make_split("toy", samples)
    assert sum(m.counts.values()) == 20


def test_save_load_roundtrip_hash_and_hand_edits(tmp_path):
    samples = _samples([0, 1] * 20)
    m = make_split("toy", samples, options={"n": 40})
    path = save_manifest(m, tmp_path / "toy-stratified.json")
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == sorted(data) and data["sha256"] == m.sha256
    back = load_manifest(path)
    assert back == m and back.sha256 == m.sha256
    # Informational fields do not change the hash; ids do.
    assert Manifest(**{**m.__dict__, "notes": "x", "stats": {}}).sha256 == m.sha256
    moved = Manifest(**{**m.__dict__, "train": m.train[1:], "test": m.test + m.train[:1]})
    assert moved.sha256 != m.sha256
    data["train"] = data["train"][1:]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="sha256"):
        load_manifest(path)
    del data["sha256"]
    path.write_text(json.dumps(data))
    assert len(load_manifest(path).train) == len(m.train) - 1   # no hash: accepted as given
    data["val"].append(data["test"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="both val and test"):
        load_manifest(path)


def test_apply_returns_parts_and_rejects_unknown_ids(tmp_path):
    samples = _samples([0, 1] * 20)
    m = make_split("toy", samples)
    train, val, test = apply(m, samples)
    assert [s.id for s in train] == list(m.train) and [s.id for s in test] == list(m.test)
    with pytest.raises(DataError, match=r"lacks \(e.g. .*bench split make") as info:
        apply(m, samples[1:])
    assert "\n" not in str(info.value)


def test_resolve_manifest(tmp_path):
    assert resolve_manifest("br35h", "leak-free") == manifest_path("br35h", "leak-free")
    assert resolve_manifest("nothing", "stratified") is None
    own = save_manifest(make_split("toy", _samples([0, 1] * 5)), tmp_path / "mine.json")
    assert resolve_manifest("toy", str(own)) == own
    with pytest.raises(DataError, match="not found"):
        resolve_manifest("toy", str(tmp_path / "absent.json"))


def test_load_missing_or_broken_manifest(tmp_path):
    with pytest.raises(DataError, match="bench split make"):
        load_manifest(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"dataset": "toy"}')
    with pytest.raises(DataError, match="not a split manifest"):
        load_manifest(tmp_path / "y.json")


def plan_samples(n, opts):
    """Samples with the ids, groups and labels of the synthetic data set, and blank images."""
    from mribench.data.phantom import plan

    blank = np.zeros((2, 2), np.float32)
    return [Sample(id=f"synthetic/{p.index:05d}", group=f"synthetic/{p.group:05d}",
                   label=p.label, image=blank)
            for p in plan(n, opts["seed"], opts["duplicates"])]


def test_committed_synthetic_manifest_is_reproducible(tiny_samples):
    # Ids, labels and groups of the synthetic data set come from the generator's plan, before
    # any pixel, so the committed manifest (default options) can be re-made without images.
    from mribench.datasets.synthetic import Synthetic

    committed = load_manifest(SPLITS / "synthetic-stratified.json")
    assert committed.options == Synthetic.defaults
    opts = Synthetic.defaults
    samples = plan_samples(opts["n"], opts)
    real = tiny_samples(n=24, size=32, seed=opts["seed"], duplicates=opts["duplicates"])
    assert [(s.id, s.group, s.label) for s in real] == [
        (s.id, s.group, s.label) for s in plan_samples(24, opts)]
    remade = make_split("synthetic", samples, strategy="stratified", seed=committed.seed,
                        options=Synthetic.defaults)
    assert remade.sha256 == committed.sha256
    manifest, path = split_for("synthetic", samples, options=Synthetic.defaults)
    assert path == SPLITS / "synthetic-stratified.json" and manifest == committed
    fresh, none = split_for("synthetic", samples[:100], options={**Synthetic.defaults, "n": 100})
    assert none is None and sum(fresh.counts.values()) == 100


# --------------------------------------------------------------------------- real data


@pytest.mark.br35h
@pytest.mark.slow
def test_br35h_committed_manifests(br35h_samples):
    ds, samples = br35h_samples
    official = ds.official_parts()
    assert len(samples) == 3000 and sum(s.mask is not None for s in samples) == 801
    assert Counter(official.values()) == {"train": 500, "val": 201, "test": 100}
    overall = np.mean([s.label for s in samples])
    label = {s.id: s.label for s in samples}
    for strategy in ("official", "leak-free"):
        m = load_manifest(SPLITS / f"br35h-{strategy}.json")
        assert m.dataset == "br35h" and m.strategy == strategy
        part = m.part_of()
        kept = [sid for sid in official if sid not in m.dropped]
        assert all(part[sid] == official[sid] for sid in kept)       # published parts kept
        for p, ids in m.parts().items():
            assert abs(np.mean([label[i] for i in ids]) - overall) < 0.02, (strategy, p)
        remade = make_split("br35h", samples, official, strategy, seed=m.seed,
                            threshold=m.threshold, options=m.options)
        assert remade.sha256 == m.sha256                               # reproducible
        a = audit(m, samples)
        if strategy == "official":
            assert sum(m.counts.values()) == 3000
            assert 10 <= a["leaks"]["test_in_train_or_val"] <= 20   # SOURCE.md: 13 of 100
        else:
            assert a["n_groups_straddling"] == 0
            assert a["leaks"]["test_in_train_or_val"] == 0
            dropped_test = [sid for sid in m.dropped if official.get(sid) == "test"]
            assert 10 <= len(dropped_test) <= 20
    assert 1450 <= len({s.group for s in samples}) <= 1650             # SOURCE.md: ~1,560


def test_audit_dataset_is_a_library_function():
    """The data audit (``bench data audit``) without click: a manifest made for other data is
    listed, not audited, and the text names it."""
    from mribench.split.audit import audit_dataset, format_audit

    report = audit_dataset("synthetic[n=40]", image_size=32)
    assert report.n_images == 40 and report.n_groups <= 40
    (m,) = [m for m in report.manifests if m.file == "synthetic-stratified.json"]
    assert m.n_missing == 360 and m.counts is None and m.shortcut_accuracy is None
    text = format_audit(report)
    assert text.splitlines()[0].startswith("synthetic: 40 labelled images")
    assert "not for these data: 360 ids missing" in text
