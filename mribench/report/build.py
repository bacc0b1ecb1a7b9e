"""Build the report of a results folder: one self-contained HTML page, Markdown, PNG figures.

``build_report(results_dir)`` writes ``report/`` inside the results folder (beside its rows;
``out_dir`` says elsewhere):

- ``index.html``: one page with inline CSS and the figures inlined as base64 PNGs; it needs
  no network and no other file, so it can be mailed or attached to a CI run;
- ``report.md``: the same tables in GitHub Markdown, linking the PNGs;
- ``figures/*.png``: metric bars with 95% CIs per task, ROC curves, confusion matrices,
  a montage of test slices with true and predicted contours, training curves.

Sections: ranked tables per task (rank by ``rank_by``, rank groups from paired tests, see
:mod:`mribench.results.read`), figures, published vs reproduced figures
(``benchmarks/published.toml``), the rows that failed or were skipped with their reason,
provenance (command, versions, git revision, device, split manifest and its hash, leakage
audit, shortcut audit with a plain-language warning when metadata alone predicts the labels,
see :mod:`mribench.split.shortcuts`) and each method's reference, parameters and timings.
With several data sets or external sets, "Which pipeline holds up?" adds rank intervals per
data set, the consensus over data sets, the transfer-matrix heatmap, the critical-difference
diagram and accuracy on the line (:mod:`mribench.report.holdup`).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mribench.api.errors import MribenchError
from mribench.atomic import atomic_write_bytes, atomic_write_text
from mribench.eval.registry import get_metric, metric_label, metric_names, rank_metric
from mribench.eval.stats import MAX_RESAMPLES
from mribench.report import figures as F
from mribench.report.holdup import TITLE as HOLDUP_TITLE
from mribench.report.holdup import holdup_section
from mribench.report.published import compare_published, load_published
from mribench.report.tables import (
    fmt_p,
    format_table,
    table_metrics,
    table_notes,
    transfer_table,
)
from mribench.results.layout import RunLayout
from mribench.results.rank import ranked_table
from mribench.results.read import RunResults, load_results
from mribench.split.shortcuts import PROBE_DESCRIPTIONS

__all__ = ["build_report"]

TASK_TITLES = {"classify": "Image-level classification", "segment": "Segmentation"}


def build_report(results_dir: Path, out_dir: Path | None = None, rank_by: str = "f1", *,
                 published: Path | None = None) -> Path:
    """Write the report of a results folder and return the path of its ``index.html``.

    Parameters
    ----------
    results_dir : Path
        A folder written by ``bench run`` (``results/<run-id>``).
    out_dir : Path, optional
        Where to write; default the results folder's ``report/`` (see :func:`report_dir`;
        the ``run_id`` in run.json is never a path).
    rank_by : str, default="f1"
        Metric the tables are ranked by. A task that lacks it (``auc`` for segmentation, say)
        is ranked by ``f1`` instead, and the page says so.
    published : Path, optional
        Published-figures TOML (default: ``benchmarks/published.toml`` of the source tree).

    Raises
    ------
    MribenchError
        When ``results_dir`` is not a results folder, ``rank_by`` is no metric of any task,
        ``out_dir`` is the working folder (or above it), or the report cannot be written.
    """
    results = load_results(results_dir)
    known = set(metric_names())
    if rank_by not in known:
        raise MribenchError(f"--rank-by {rank_by!r} is not a metric; choose one of "
                            f"{', '.join(sorted(known))}")
    out = report_dir(results.path, out_dir)
    fig_dir = out / "figures"

    def write(path: Path, data: bytes | str) -> None:
        try:
            if isinstance(data, str):
                atomic_write_text(path, data)
            else:
                atomic_write_bytes(path, data)
        except OSError as exc:
            raise _unwritable(out, exc) from None

    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(out, exc) from None

    colour = F.colours(results)
    tables = {t: ranked_table(results, t, rank_metric(t, rank_by)) for t in results.tasks()}
    figs: dict[str, tuple[str, bytes]] = {}

    def add(name: str, fig: Any, caption: str) -> None:
        if fig is not None:
            data = F.png(fig)
            write(fig_dir / f"{name}.png", data)
            figs[name] = (caption, data)

    for task, table in tables.items():
        add(f"bars_{task}", F.fig_metric_bars(table, colour),
            f"{TASK_TITLES[task]}: each metric with its 95% bootstrap CI (error bars), "
            "methods in rank order.")
    order = list(tables["classify"]["method"]) if "classify" in tables else []
    add("roc", F.fig_roc(results, colour),
        "ROC curves from the methods' scores on the labelled test images "
        "(segmenters score by predicted tumour area).")
    add("confusion", F.fig_confusion(results, order),
        "Confusion matrices of the image-level labels: counts and row percentages.")
    seg_order = list(tables["segment"]["method"]) if "segment" in tables else []
    add("montage", F.fig_montage(results, seg_order, colour),
        "Test slices across the leading segmenter's per-image Dice, worst (left) to best "
        "(right): true contour solid yellow, each method's prediction dashed in its colour.")
    add("training", F.fig_training(results, colour),
        "Training curves from history.json: losses (black, left axis) and the validation "
        "metric (colour, right axis; dot at its best epoch).")

    comparison = compare_published(results, load_published(published))
    extra = (_extra_sections(results, rank_by) + _holdup_extra(results, rank_by, add, figs)
             + _artefact_extra(results, rank_by, add, figs))
    page = _html(results, tables, figs, comparison, colour, rank_by, extra)
    write(out / "index.html", page)
    write(out / "report.md", _markdown(results, tables, figs, comparison, rank_by, extra))
    return out / "index.html"


def _placer(add: Any, figs: dict[str, tuple[str, bytes]]) -> Any:
    """A figure sink for a section: writes the figure (``add``) and returns its HTML and
    Markdown (empty when there was nothing to draw)."""
    def place(name: str, fig: Any, caption: str) -> tuple[str, str]:
        add(name, fig, caption)
        if name not in figs:
            return "", ""
        return (_img(figs, name, caption),
                f"![{name}](figures/{name}.png)\n\n*{caption}*\n")
    return place


def _holdup_extra(results: RunResults, rank_by: str, add: Any,
                  figs: dict[str, tuple[str, bytes]]) -> list[tuple[str, str, str, str]]:
    """The section "Which pipeline holds up?" (none for a run of one data set
    without external sets); ``add`` writes each of its figures."""
    held = holdup_section(results, rank_by, _placer(add, figs))
    return [] if held is None else [("holdup", HOLDUP_TITLE, *held)]


def _artefact_extra(results: RunResults, rank_by: str, add: Any,
                    figs: dict[str, tuple[str, bytes]]) -> list[tuple[str, str, str, str]]:
    """The section "Under artefacts" (none for a run without ``--corrupt``)."""
    from mribench.report.artefacts import TITLE, artefact_section

    section = artefact_section(results, rank_by, _placer(add, figs))
    return [] if section is None else [("artefacts", TITLE, *section)]


def _unwritable(out: Path, exc: OSError) -> MribenchError:
    where = exc.filename or out
    return MribenchError(f"cannot write the report to {out} ({exc.strerror or exc}: {where}); "
                         "pass --out a folder you can write to")


def report_dir(results_dir: Path, out_dir: Path | None = None) -> Path:
    """Where the report of ``results_dir`` goes: ``out_dir``, else ``report/`` inside the
    results folder (:attr:`RunLayout.report_dir`), so it travels with the results.

    Ids read from files (run.json's ``run_id``) never become paths, so an absolute or ``../``
    id cannot send the report elsewhere. An ``out_dir`` that is the working folder or one of its parents (``DIR/..``,
    ``.``) is a MribenchError: a report writes index.html, report.md and figures/, and needs
    a folder of its own.
    """
    if out_dir is None:
        return RunLayout(Path(results_dir)).report_dir
    out = Path(out_dir)
    try:
        resolved, cwd = out.resolve(), Path.cwd().resolve()
    except OSError:  # an unreadable cwd: no folder to protect, writing will say what is wrong
        return out
    if out.name in ("", ".", "..") or resolved == cwd or resolved in cwd.parents:
        raise MribenchError(f"--out {out_dir} is {resolved}, the working folder or one above "
                            "it; a report needs a folder of its own, e.g. --out reports/NAME")
    return out


# --------------------------------------------------------------------------- shared text


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(v) else f"{v:.{digits}f}"


def _task_intro(results: RunResults, task: str, table: pd.DataFrame, rank_by: str) -> str:
    used = table.attrs.get("rank_by", rank_by)
    test = table.attrs.get("test", "")
    alpha = table.attrs.get("alpha", 0.05)
    if task == "classify":
        text = ("One label per test image (tumour / no tumour), on the test images with a "
                "known label. Segmenters answer by thresholding their predicted tumour area "
                "(threshold chosen on validation).")
    else:
        policies = {results.rows[m].metrics["segment"].get("empty_policy") for m in
                    table["method"]}
        excluded = sum(int(results.rows[m].metrics["segment"].get("n_excluded", 0))
                       for m in table["method"])
        text = ("One mask per test slice with a known ground truth: the annotated tumour "
                "slices and the healthy slices (whose truth is empty, so every pixel a method "
                "paints there is a false positive). Accuracy to Specificity pool the pixels of "
                "all those slices; the per-image columns average "
                f"each slice's own Dice and IoU (empty-mask policy: "
                f"{', '.join(sorted(p for p in policies if p)) or 'n/a'}; "
                f"{excluded} slice-scores excluded in all).")
    rank_note = f"Ranked by <b>{_e(_label(task, used))}</b>"
    if used != rank_by:
        rank_note += f" ({_e(rank_by)} does not apply to this task)"
    seeds = int(table["seeds"].max()) if "seeds" in table and len(table) else 1
    values = f"Values: {_values_note(seeds)}"
    capped = ("" if "time_capped" not in table or not table["time_capped"].any() else
              " Rows marked <b>time-capped</b> trained under a wall-clock budget: not "
              "comparable across machines.")
    return (f"<p class='lead'>{_e(text)}</p><p class='lead'>{rank_note}. {values}. "
            f"<b>Group</b>: methods in group 1 do not differ significantly from the leader "
            f"({_e(test)}, Holm-adjusted, α = {alpha}); a group marked ? is undecided (its "
            f"decision lies within 3 Monte-Carlo errors of α after {MAX_RESAMPLES:,} "
            "resamples). p is each row's adjusted p-value against the leader ± its "
            "Monte-Carlo error; the last column is "
            f"{_e(table.attrs.get('secondary', ''))} (first seed, unadjusted), for reference. "
            "n (clusters): the images scored and the clusters the statistics resample. Rows "
            "marked <b>no skill</b> learn nothing about tumours: what each metric gives for "
            f"free, listed below the ranked methods, never ranked.{capped}</p>")


def _label(task: str, metric: str) -> str:
    return metric_label(metric, task)


# --------------------------------------------------------------------------- HTML

CSS = """
:root { --ink:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --accent:#1f5fbf;
        --good:#e8f3ec; --bad:#fdecec; --warn:#fff6e0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color:var(--ink); background:var(--bg); }
header { background:#17243a; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .sub { color:#c9d3e3; margin:0; }
header .chips { margin-top:10px; }
.chip { display:inline-block; padding:2px 10px; margin:0 6px 0 0; border-radius:12px;
        font-size:12px; background:#2c3d5c; color:#e6ecf5; }
.chip.ok { background:#1e6b45; } .chip.fail { background:#a33a3a; }
.chip.skip { background:#8a6a1f; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:8px 32px;
      position:sticky; top:0; z-index:2; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; font-size:13px; }
main { max-width:1440px; margin:0 auto; padding:8px 32px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px;
          padding:18px 22px; margin:18px 0; }
h2 { font-size:18px; margin:0 0 8px; }
h3 { font-size:15px; margin:18px 0 6px; }
p.lead { color:#394150; margin:4px 0 10px; max-width:980px; }
.table-wrap { overflow-x:auto; }
table { border-collapse:collapse; font-size:13px; margin:8px 0; }
th, td { padding:6px 8px; border-bottom:1px solid var(--line); text-align:left;
         vertical-align:top; }
th { background:#f1f3f6; font-weight:600; white-space:nowrap; position:relative; }
th.sorted { background:#dde8f8; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.num .ci { display:block; color:var(--muted); font-size:11px; }
td.best .v { font-weight:700; }
td.sorted { background:#f4f8fe; }
tr.g1 td:first-child { box-shadow: inset 3px 0 0 #1e6b45; }
.dot { display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:6px;
       vertical-align:middle; }
.kind { color:var(--muted); font-size:11px; margin-left:4px; }
.grp { display:inline-block; min-width:22px; text-align:center; border-radius:10px;
       padding:0 6px; font-size:12px; background:#eef0f3; }
.grp.g1 { background:#d7eedf; color:#14532d; font-weight:600; }
.muted { color:var(--muted); }
figure { margin:14px 0 6px; }
.figrow { display:flex; flex-wrap:wrap; gap:0 28px; align-items:flex-start; }
.figrow figure { flex:0 1 auto; }
.figrow figcaption { max-width:480px; }
td.name { white-space:nowrap; }
figure img { max-width:100%; height:auto; display:block; border:1px solid var(--line); border-radius:4px;
             background:#fff; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:4px; max-width:980px; }
.status-failed { color:#a33a3a; font-weight:600; } .status-skipped { color:#8a6a1f;
  font-weight:600; } .status-incomplete { color:#8a6a1f; font-weight:600; }
dl.kv { display:grid; grid-template-columns: max-content 1fr; gap:4px 18px; margin:8px 0; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; word-break:break-all; }
code { font:12px/1.4 "SFMono-Regular", Menlo, Consolas, monospace; background:#f1f3f6;
       padding:1px 4px; border-radius:3px; }
details { border-top:1px solid var(--line); padding:6px 0; }
details summary { cursor:pointer; font-weight:600; }
.delta-pos { color:#1e6b45; } .delta-neg { color:#a33a3a; }
.warn { background:var(--warn); padding:6px 10px; border-radius:6px; }
.pub { border-top:1px solid var(--line); padding-top:4px; margin-top:10px; }
p.cite { margin:2px 0 4px; color:#394150; font-size:13px; max-width:1100px; }
footer { text-align:center; color:var(--muted); font-size:12px; padding:12px; }
"""


def _png_width(data: bytes) -> int:
    """Pixel width of a PNG (from its IHDR chunk)."""
    return int.from_bytes(data[16:20], "big")


def _img(figs: dict[str, tuple[str, bytes]], name: str, alt: str) -> str:
    """A figure inlined as base64, shown at its physical size (144 dpi PNG at 96 px/in)."""
    if name not in figs:
        return ""
    caption, data = figs[name]
    b64 = base64.b64encode(data).decode("ascii")
    width = round(_png_width(data) * 96 / F.STYLE["savefig.dpi"])
    return (f"<figure id='fig-{name}'><img alt='{_e(alt)}' width='{width}' "
            f"src='data:image/png;base64,{b64}'><figcaption>{_e(caption)}</figcaption></figure>")


def _html_table(table: pd.DataFrame, colour: dict[str, str], results: RunResults) -> str:
    task = table.attrs["task"]
    rank_by = table.attrs["rank_by"]
    undefined = table.attrs.get("undefined") or {}
    names = ([m for m in table_metrics(table) if table[m].notna().any() or m in undefined]
             if not table.empty else [])
    head = ["Rank", "Group", "Method", "n (clusters)"] + [_label(task, m) for m in names] + [
        "Fit (s)", "ms / image", "p vs leader", "p (secondary)"]
    cls = [""] * 4 + ["sorted" if m == rank_by else "" for m in names] + ["", "", "", ""]
    out = ["<div class='table-wrap'><table class='rank'><thead><tr>"]
    out += [f"<th class='{c}'>{_e(h)}{' ▼' if c else ''}</th>" for h, c in zip(head, cls,
                                                                               strict=True)]
    out.append("</tr></thead><tbody>")
    ranked = table[~table["no_skill"].astype(bool)] if "no_skill" in table else table
    best = {m: ranked[m].max() if get_metric(m).higher_is_better else ranked[m].min()
            for m in names}
    for _, r in table.iterrows():
        out.append(_html_row(r, names, best, colour, results, rank_by, undefined))
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_row(r: pd.Series, names: list[str], best: dict[str, float], colour: dict[str, str],
              results: RunResults, rank_by: str, undefined: dict[str, str]) -> str:
    """One row of a ranked HTML table (a no-skill row: no rank, no group, marked)."""
    no_skill = bool(r.get("no_skill")) or not np.isfinite(r["rank"])
    g1 = not no_skill and r["group"] == 1
    group = "–" if no_skill else f"{int(r['group'])}{'?' if r.get('group_undecided') else ''}"
    row = results.rows[r["method"]]
    mark = (" (time-capped)" if r.get("time_capped") else "") + (" (no skill)" if no_skill
                                                                  else "")
    ref = f" title='{_e(row.reference)}'" if row.reference else ""
    clusters = r.get("n_clusters", np.nan)
    out = [f"<tr class='{'g1' if g1 else ''}'>",
           f"<td class='num'>{'–' if no_skill else int(r['rank'])}</td>",
           f"<td><span class='grp {'g1' if g1 else ''}'>{_e(group)}</span></td>",
           f"<td class='name'{ref}><span class='dot' style='background:"
           f"{colour.get(r['method'])}'></span>{_e(r['method'])}{_e(mark)}"
           f"<span class='kind'>{_e(r['kind'])}</span></td>",
           f"<td class='num'>{int(r['n'])}"
           + (f" ({int(clusters)})" if pd.notna(clusters) else "") + "</td>"]
    for m in names:
        c = ["num"]
        if not no_skill and np.isfinite(r[m]) and np.isclose(r[m], best[m]):
            c.append("best")
        if m == rank_by:
            c.append("sorted")
        ci = ""
        if np.isfinite(r[f"{m}_low"]):
            ci = f"<span class='ci'>[{_num(r[f'{m}_low'])}, {_num(r[f'{m}_high'])}]</span>"
        sd = r.get(f"{m}_sd", np.nan)
        sd_text = f" ± {_num(sd)}" if sd is not None and np.isfinite(sd) else ""
        value = "n/a" if not np.isfinite(r[m]) and m in undefined else _num(r[m])
        out.append(f"<td class='{' '.join(c)}'><span class='v'>{value}{sd_text}</span>"
                   f"{ci}</td>")
    out.append(f"<td class='num'>{_num(r['fit_s'], 1)}</td>")
    out.append(f"<td class='num'>{_num(r['predict_ms'], 1)}</td>")
    p = r["p_vs_leader"]
    leader = not no_skill and int(r["rank"]) == 1 and not np.isfinite(p)
    p_text = "leader" if leader else fmt_p(p, r.get("p_vs_leader_se", np.nan))
    out.append(f"<td class='num'>{_e(p_text)}</td>")
    out.append(f"<td class='num'>{_num(r.get('p_secondary', np.nan))}</td>")
    out.append("</tr>")
    return "".join(out)


def _notes_html(table: pd.DataFrame) -> str:
    """The notes under a ranked HTML table (:func:`mribench.report.tables.table_notes`)."""
    notes = table_notes(table, intervals=False)
    return "".join(f"<p class='muted'>{_e(n)}</p>" for n in notes)


def _notes_md(table: pd.DataFrame) -> str:
    notes = table_notes(table, intervals=False)
    return "\n\n".join(notes) + "\n" if notes else ""


def _kv(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f"<dl class='kv'>{rows}</dl>"


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, d)]


def _shortcut_items(shortcuts: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, "accuracy / AUC") of each probe of a shortcut audit, then the baseline."""
    items = [(f"accuracy / AUC from {PROBE_DESCRIPTIONS.get(name, name)} alone",
              f"{_num(probe.get('accuracy'))} / {_num(probe.get('auc'))}")
             for name, probe in shortcuts.items()
             if isinstance(probe, dict) and "accuracy" in probe]
    return items + [("majority-class baseline", _num(shortcuts.get("majority"))),
                    ("train / test images",
                     f"{shortcuts.get('n_train', '–')} / {shortcuts.get('n_test', '–')}")]


def _shortcut_warning(shortcuts: dict[str, Any]) -> str:
    """A plain-language warning about the flagged probes of a shortcut audit, "" if none."""
    flagged = [name for name in shortcuts.get("flagged") or ()
               if isinstance(shortcuts.get(name), dict)]
    if not flagged:
        return ""
    seen = " or ".join(PROBE_DESCRIPTIONS.get(name, name) for name in flagged)
    best = max(flagged, key=lambda name: shortcuts[name]["accuracy"])
    return (f"A classifier that never looks at the tumour, only at {seen}, tells tumour from "
            f"no tumour with accuracy {_num(shortcuts[best]['accuracy'])} on this test part "
            f"(always answering the commonest class: {_num(shortcuts.get('majority'))}). "
            "The classes' images seem to come from different sources, so part of every "
            "method's score here may come from recognising the source rather than the "
            "tumour: read the rankings with that in mind.")


def _counts_text(counts: Any) -> str:
    """A split's counts: ``train 34, val 6, test 20``; per fold (``fold 0: ...; fold 1:
    ...``) for a cross-validated run, whose counts are a list."""
    def one(c: Any) -> str:
        return ", ".join(f"{k} {v}" for k, v in c.items()) if isinstance(c, dict) else str(c)

    if isinstance(counts, list):
        return "; ".join(f"fold {i}: {one(c)}" for i, c in enumerate(counts))
    return one(counts or {})


def _provenance_items(results: RunResults) -> list[tuple[str, Any]]:
    run = results.run
    split = run.get("split") or {}
    dataset = run.get("dataset") or {}
    versions = run.get("versions") or {}
    return [
        ("command", f"<code>{_e(run.get('command', ''))}</code>"),
        ("run id", _e(results.run_id)),
        ("status", _e(run.get("status", ""))),
        ("started / ended", f"{_e(run.get('started', ''))} / {_e(run.get('ended', ''))}"),
        ("git revision", f"<code>{_e(run.get('git_revision', ''))}</code>"),
        ("device", _e(run.get("device", ""))),
        ("seed / profile / image size",
         f"{_e(run.get('seed'))} / {_e(run.get('profile'))} / {_e(run.get('image_size'))}"),
        ("data set", _e(f"{_dataset_label(run)} ({dataset.get('n_samples', '?')} samples"
                        f"{', ' + str(dataset['data_dir']) if dataset.get('data_dir') else ''})")),
        ("split", _e(f"{split.get('name', '')}: strategy {split.get('strategy', '')}, seed "
                     f"{split.get('seed', '')}, duplicate threshold {split.get('threshold', '')}"
                     )),
        ("split counts", _e(_counts_text(split.get("counts")))),
        ("split manifest", f"<code>{_e(split.get('path', ''))}</code>"),
        ("manifest sha256", f"<code>{_e(split.get('sha256', ''))}</code>"),
        ("versions", _e(", ".join(f"{k} {v}" for k, v in versions.items()))),
    ]


def _published_html(rows: list[dict[str, Any]]) -> str:
    """One block per paper entry: its citation and note, then a metric x figure table."""
    if not rows:
        return "<p class='muted'>No published figures are recorded.</p>"
    entries: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["citation"], r["method"], r["task"], r["summary"], r["paper_dataset"])
        entries.setdefault(key, []).append(r)
    out = []
    for (citation, method, task, summary, paper_ds), recs in entries.items():
        first = recs[0]
        cite = _e(citation) + (f" · doi:{_e(first['doi'])}" if first.get("doi") else "")
        if not first["verified"]:
            cite += " <span class='muted'>(not yet checked against the paper)</span>"
        ds = f"published on <b>{_e(paper_ds)}</b>, this run on <b>{_e(first['run_dataset'])}</b>"
        if not first["same_dataset"]:
            ds = f"<span class='warn'>{ds}: not comparable</span>"
        status = "" if first["status"] == "done" else (
            f" · <span class='status-{_e(first['status'])}'>{_e(first['status'])}</span>")
        if method == "—":
            status = " · <span class='muted'>no mribench method reproduces it yet</span>"
            method = "(unassigned)"
        head = (f"<h3>{_e(method)} <span class='kind'>{_e(task)}, {_e(summary)}</span>"
                f"{status}</h3><p class='cite'>{cite}<br>{ds}"
                + (f"<br><span class='muted'>{_e(first['where'].rstrip('.'))}. "
                   f"{_e(first['note'])}</span>"
                   if first["note"] or first["where"] else "") + "</p>")
        cells = {"Published": [], "Reproduced [95% CI]": [], "Δ (reproduced − published)": [],
                 "Counterpart": [], "Verdict": []}
        for r in recs:
            cells["Counterpart"].append(f"<td>{_e(r.get('counterpart', ''))}</td>")
            cells["Verdict"].append(f"<td>{_e(r.get('verdict', ''))}</td>")
            cells["Published"].append(f"<td class='num'>{_num(r['published'])}</td>")
            rep = _num(r["reproduced"])
            if np.isfinite(r["ci_low"]):
                rep += f"<span class='ci'>[{_num(r['ci_low'])}, {_num(r['ci_high'])}]</span>"
            cells["Reproduced [95% CI]"].append(f"<td class='num'>{rep}</td>")
            d = r["delta"]
            cls = "" if not np.isfinite(d) else ("delta-pos" if d >= 0 else "delta-neg")
            text = "–" if not np.isfinite(d) else f"{d:+.3f}"
            cells["Δ (reproduced − published)"].append(f"<td class='num {cls}'>{text}</td>")
        header = "".join(f"<th>{_e(_label(task, r['metric']))}</th>" for r in recs)
        body = "".join(f"<tr><th>{_e(k)}</th>{''.join(v)}</tr>" for k, v in cells.items())
        out.append(f"<div class='pub'>{head}<div class='table-wrap'><table><thead><tr><th></th>"
                   f"{header}</tr></thead><tbody>{body}</tbody></table></div></div>")
    return "".join(out)


def _extra_sections(results: RunResults, rank_by: str) -> list[tuple[str, str, str, str]]:
    """(id, title, html, markdown) of the sections beyond the main tables: segmentation on
    annotated tumour slices only, each external evaluation set, and "Does it generalise?"."""
    out = []
    if "segment" in results.tasks():
        table = ranked_table(results, "segment", rank_metric("segment", rank_by),
                             view="tumour_only")
        if not table.empty:
            intro = ("The same segmentations scored on the annotated tumour slices only (the "
                     "convention of the Br35H U-Net paper): healthy slices, and the false "
                     "positives painted on them, are left out. "
                     f"{table.attrs.get('note', '')}.")
            out.append(("segment-tumour", "Segmentation: annotated tumour slices only",
                        f"<p class='lead'>{_e(intro)}</p>{format_table(table, 'html')}"
                        f"{_notes_html(table)}",
                        f"{intro}\n\n{format_table(table, 'github')}\n\n{_notes_md(table)}"))
    if not results.eval_sets:
        return out
    html = ["<p class='lead'>Every method was fitted once on the run's data set and scored on "
            "its test part and on each external set below, which shares no image or patient "
            "with it. The transfer tables put the two side by side: the drop is external minus "
            "in-distribution, with a 95% interval from resampling each set's clusters "
            "independently; a † marks a score not above the set's best no-skill row; "
            "Kendall's tau compares the two rankings (1: same order).</p>"]
    md = []
    for task in results.tasks():
        chosen = rank_metric(task, rank_by)
        text = transfer_table(results, task, chosen, fmt="html")
        if text:
            table_html, _, taus = text.partition("</table>")
            html.append(f"<h3>{_e(TASK_TITLES[task])} ({_e(chosen)})</h3>{table_html}</table>"
                        f"<p class='muted'>{_e(taus.strip())}</p>")
            md += [f"### {TASK_TITLES[task]} ({chosen})", "",
                   transfer_table(results, task, chosen, fmt="github") or "", ""]
    for name in results.eval_sets:
        view = results.on(name)
        spec = next((e.get("spec") for e in results.run.get("eval_sets", [])
                     if e.get("name") == name), name)
        html.append(f"<h3>External set {_e(name)} <span class='muted'>({_e(spec)})</span></h3>")
        md += [f"### External set {name} (`{spec}`)", ""]
        for task in view.tasks():
            table = ranked_table(view, task, rank_metric(task, rank_by))
            html.append(f"<h4>{_e(TASK_TITLES[task])}</h4>{format_table(table, 'html')}"
                        f"{_notes_html(table)}")
            md += [f"#### {TASK_TITLES[task]}", "", format_table(table, "github"), "",
                   _notes_md(table)]
        skipped = [r for r in view.rows.values() if r.status == "skipped"]
        if skipped:
            note = "; ".join(f"{r.name}: {r.reason}" for r in skipped)
            html.append(f"<p class='muted'>Skipped cells: {_e(note)}</p>")
            md += [f"Skipped cells: {note}", ""]
    out.append(("generalise", "Does it generalise?", "".join(html), "\n".join(md)))
    return out


def _html(results: RunResults, tables: dict[str, pd.DataFrame],
          figs: dict[str, tuple[str, bytes]], comparison: list[dict[str, Any]],
          colour: dict[str, str], rank_by: str,
          extra: list[tuple[str, str, str, str]] | None = None) -> str:
    nav = [f"<a href='#{t}'>{TASK_TITLES[t]}</a>" for t in tables]
    sections = [_html_task_section(results, task, table, figs, colour, rank_by)
                for task, table in tables.items()]
    if not tables:
        sections.append("<section><h2>Results</h2><p class='warn'>No method finished: there is "
                        "nothing to rank.</p></section>")
    for ident, title, body_html, _ in extra or []:
        nav.append(f"<a href='#{ident}'>{_e(title)}</a>")
        sections.append(f"<section id='{ident}'><h2>{_e(title)}</h2>"
                        f"<div class='table-wrap'>{body_html}</div></section>")
    if "training" in figs:
        nav.append("<a href='#training'>Training</a>")
        sections.append(f"<section id='training'><h2>Training curves</h2>"
                        f"{_img(figs, 'training', 'training curves')}</section>")
    nav.append("<a href='#published'>Published vs reproduced</a>")
    sections.append("<section id='published'><h2>Published vs reproduced</h2><p class='lead'>"
                    "Figures reported by the papers (benchmarks/published.toml) beside this "
                    "run's numbers. Papers differ in split, preprocessing and aggregation, so a "
                    "gap is a prompt to read the note, not a verdict.</p>"
                    f"{_published_html(comparison)}</section>")
    nav.append("<a href='#not-done'>Failed &amp; skipped</a>")
    sections.append(_html_not_done_section(results))
    nav.append("<a href='#provenance'>Provenance</a>")
    sections.append(_html_provenance_section(results))
    sub, chips = _html_header(results, rank_by)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>mribench report · {_e(results.run_id)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>mribench report</h1><p class='sub'>{sub}</p>"
        f"<div class='chips'>{''.join(chips)}</div></header><nav>{''.join(nav)}</nav><main>"
        + "".join(sections)
        + "</main><footer>Generated by mribench from "
        f"<code>{_e(results.path)}</code></footer></body></html>\n")


def _html_header(results: RunResults, rank_by: str) -> tuple[str, list[str]]:
    """The page's subtitle (run, data set, profile, split, date) and its status chips."""
    run = results.run
    dataset = (run.get("dataset") or {}).get("name", "")
    statuses = [r.status for r in results.rows.values()]
    chips = [f"<span class='chip ok'>{statuses.count('done')} done</span>"]
    for s, c in (("failed", "fail"), ("skipped", "skip"), ("incomplete", "skip")):
        if statuses.count(s):
            chips.append(f"<span class='chip {c}'>{statuses.count(s)} {s}</span>")
    chips.append(f"<span class='chip'>ranked by {_e(rank_by)}</span>")
    split = run.get("split") or {}
    sub = (f"run <b>{_e(results.run_id)}</b> · data set <b>{_e(dataset)}</b> · profile "
           f"<b>{_e(run.get('profile', ''))}</b> · split <b>{_e(split.get('name', ''))}</b> "
           f"· {_e(run.get('ended') or run.get('started') or '')}")
    return sub, chips


def _html_task_section(results: RunResults, task: str, table: pd.DataFrame,
                       figs: dict[str, tuple[str, bytes]], colour: dict[str, str],
                       rank_by: str) -> str:
    """One task's section: its introduction, ranked table and figures."""
    body = [f"<section id='{task}'><h2>{TASK_TITLES[task]}</h2>",
            _task_intro(results, task, table, rank_by), _html_table(table, colour, results),
            _notes_html(table),
            _img(figs, f"bars_{task}", f"{task} metrics with confidence intervals")]
    if task == "classify":
        body += ["<div class='figrow'>", _img(figs, "roc", "ROC curves"),
                 _img(figs, "confusion", "confusion matrices"), "</div>"]
    else:
        body.append(_img(figs, "montage", "test slices with true and predicted contours"))
    body.append("</section>")
    return "".join(body)


def _html_not_done_section(results: RunResults) -> str:
    """The failed and skipped methods with their reasons."""
    not_done = results.not_done()
    if not_done:
        rows = "".join(
            f"<tr><td>{_e(r.name)}</td><td class='status-{_e(r.status)}'>{_e(r.status)}</td>"
            f"<td>{_e(r.reason or '')}</td></tr>" for r in not_done)
        body = (f"<div class='table-wrap'><table><thead><tr><th>Method</th><th>Status</th>"
                f"<th>Reason</th></tr></thead><tbody>{rows}</tbody></table></div>")
    else:
        body = "<p class='muted'>Every method finished.</p>"
    return f"<section id='not-done'><h2>Failed and skipped methods</h2>{body}</section>"


def _html_provenance_section(results: RunResults) -> str:
    """How the run was made, the split's leakage and shortcut audits, and every method's
    reference, timings and parameters."""
    split = results.run.get("split") or {}
    audit = split.get("audit") or {}
    audit_html = _kv([(k, _e(v)) for k, v in _flat(audit)]) if audit else (
        "<p class='muted'>No leakage audit recorded.</p>")
    shortcuts = split.get("shortcuts") or {}
    if shortcuts:
        warning = _shortcut_warning(shortcuts)
        shortcut_html = (
            (f"<p class='warn'>{_e(warning)}</p>" if warning else
             "<p class='muted'>Metadata alone does not predict the labels much better than the "
             "majority class: no shortcut found.</p>")
            + _kv([(k, _e(v)) for k, v in _shortcut_items(shortcuts)])
            + f"<p class='muted'>{_e(shortcuts.get('note', ''))}</p>")
    else:
        shortcut_html = "<p class='muted'>No shortcut audit recorded.</p>"
    methods = []
    for r in results.rows.values():
        params = "".join(f"<tr><td><code>{_e(k)}</code></td><td>{_e(json.dumps(v))}</td></tr>"
                         for k, v in sorted(r.params.items()))
        timing = ", ".join(f"{k} {_num(v, 2)}" for k, v in r.timings.items()) or "–"
        methods.append(
            f"<details><summary>{_e(r.name)} <span class='kind'>{_e(r.kind)} · "
            f"{_e(r.status)}</span></summary>"
            + _kv([("reference", _e(r.reference or "–")), ("tasks", _e(", ".join(r.tasks))),
                   ("timings", _e(timing))])
            + (f"<table><thead><tr><th>parameter</th><th>value</th></tr></thead><tbody>"
               f"{params}</tbody></table>" if params else "")
            + "</details>")
    return ("<section id='provenance'><h2>Provenance</h2>" + _kv(_provenance_items(results))
            + "<h3>Leakage audit</h3>" + audit_html
            + "<h3>Shortcut audit</h3>" + shortcut_html + "<h3>Methods</h3>" + "".join(methods)
            + "</section>")


# --------------------------------------------------------------------------- Markdown


def _values_note(seeds: int) -> str:
    """How to read a cell: one seed, or the mean over seeds with its sd."""
    if seeds <= 1:
        return ("point estimate [95% percentile bootstrap CI over the test images' clusters: "
                "patients, near-duplicate groups]")
    return (f"mean over {seeds} seeds ± sd [95% interval of a two-level bootstrap: clusters "
            "of test images, then seeds; it covers the test sample and seed-to-seed "
            "variation]")


def _dataset_label(run: dict[str, Any]) -> str:
    """The data set as the run named it: its spec (``br35h[harmonise=true]``) where it has
    options, else its name."""
    dataset = run.get("dataset") or {}
    spec = str(dataset.get("spec") or "")
    return spec if "[" in spec else str(dataset.get("name", ""))


def _markdown(results: RunResults, tables: dict[str, pd.DataFrame],
              figs: dict[str, tuple[str, bytes]], comparison: list[dict[str, Any]],
              rank_by: str, extra: list[tuple[str, str, str, str]] | None = None) -> str:
    from tabulate import tabulate

    run = results.run
    lines = [f"# mribench report: {results.run_id}", "",
             f"Data set **{_dataset_label(run)}**, profile "
             f"**{run.get('profile', '')}**, split **{(run.get('split') or {}).get('name', '')}**"
             f", ranked by **{rank_by}**. Values: "
             f"{_values_note(max((len(r.seed_metrics) for r in results.done()), default=1))}."
             " Group 1: not significantly different from the leader (paired test, Holm).", ""]

    def image(name: str) -> None:
        if name in figs:
            lines.extend([f"![{name}](figures/{name}.png)", "", f"*{figs[name][0]}*", ""])

    for task, table in tables.items():
        lines += [f"## {TASK_TITLES[task]}", "",
                  f"Ranked by {table.attrs['rank_by']}; rank groups: {table.attrs['test']}.", "",
                  format_table(table, "github") if not table.empty else "(no method)", "",
                  _notes_md(table)]
        image(f"bars_{task}")
        if task == "classify":
            image("roc")
            image("confusion")
        else:
            image("montage")
    for _, title, _, md in extra or []:
        lines += [f"## {title}", "", md, ""]
    if "training" in figs:
        lines += ["## Training curves", ""]
        image("training")
    lines += ["## Published vs reproduced", ""]
    if comparison:
        rows = [[c["method"], c["citation"] + ("" if c["verified"] else " (unverified)"),
                 f"{c['task']} ({c['summary']})", c["metric"], _num(c["published"]),
                 _num(c["reproduced"]) if c["status"] == "done" else c["status"],
                 "–" if not np.isfinite(c["delta"]) else f"{c['delta']:+.3f}",
                 f"{c['paper_dataset']} / {c['run_dataset']}", c.get("counterpart", ""),
                 c.get("verdict", "")] for c in comparison]
        lines += [tabulate(rows, headers=["Method", "Paper", "Task", "Metric", "Published",
                                          "Reproduced", "Δ", "Data set (paper / run)",
                                          "Counterpart", "Verdict"],
                           tablefmt="github", disable_numparse=True), ""]
    else:
        lines += ["No published figures recorded for these methods.", ""]
    lines += ["## Failed and skipped methods", ""]
    not_done = results.not_done()
    if not_done:
        lines += [tabulate([[r.name, r.status, r.reason or ""] for r in not_done],
                           headers=["Method", "Status", "Reason"], tablefmt="github"), ""]
    else:
        lines += ["Every method finished.", ""]
    lines += ["## Provenance", ""]
    split = run.get("split") or {}
    for key, value in [("command", f"`{run.get('command', '')}`"),
                       ("git revision", f"`{run.get('git_revision', '')}`"),
                       ("device", run.get("device", "")),
                       ("seed / profile / image size",
                        f"{run.get('seed')} / {run.get('profile')} / {run.get('image_size')}"),
                       ("split manifest", f"`{split.get('path', '')}`"),
                       ("manifest sha256", f"`{split.get('sha256', '')}`"),
                       ("split counts", _counts_text(split.get("counts"))),
                       ("leakage audit", ", ".join(f"{k} {v}" for k, v in
                                                   _flat(split.get("audit") or {})) or "–"),
                       ("shortcut audit", ", ".join(
                           f"{k} {v}" for k, v in _shortcut_items(split["shortcuts"]))
                        if split.get("shortcuts") else "–"),
                       ("versions", ", ".join(f"{k} {v}" for k, v in
                                              (run.get("versions") or {}).items()))]:
        lines.append(f"- **{key}**: {value}")
    warning = _shortcut_warning(split.get("shortcuts") or {})
    if warning:
        lines += ["", f"> **Shortcut warning.** {warning}"]
    lines.append("")
    return "\n".join(lines)
