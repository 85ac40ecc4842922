"""The deployment timeline's SVG, parsed with xml.etree, against real swaps' journals.

The steps come from `SwapEngine` runs on the memory provider (the harness of
tests/deploy/swap/test_engine_memory.py): a replace, a rollback after a failed
health check, and a worker killed inside a provider call then recovered. Each
is turned into history steps as the worker does (`epoch` of the journal's
times) and drawn; the bars, the 503 band and the markers are checked against
the journal's own offsets and durations.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from handlers.gitops.pipeline import HistoryStep, StepStatus
from service.store.models import RECOVERED_STEP
from service.web import timeline
from service.worker.deployer import journaled_steps
from tests.deploy.swap.test_engine_memory import Crash, Harness, first, h  # noqa: F401

NS = {"s": "http://www.w3.org/2000/svg"}
SCALE_TOLERANCE = 0.02  # px: the SVG's coordinates are rounded to 2 decimals


def history(harness: Harness, swap_id: int) -> list[HistoryStep]:
    """The swap's journaled steps as a deployment's history stores them."""
    return list(journaled_steps(harness.journal, swap_id))


def drawn(steps: list[HistoryStep]) -> tuple[timeline.Timeline, ET.Element]:
    line = timeline.build(steps)
    return line, ET.fromstring(str(timeline.svg(line, "a swap")))


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall("s:g[@class='bar']", NS) + root.findall("s:g[@class='bar failed']", NS)


def check_geometry(steps: list[HistoryStep], root: ET.Element) -> None:
    """Every bar sits at its step's offset and is as long as the step, on one scale."""
    origin = min(s.started_at for s in steps)
    total = max(s.finished_at for s in steps) - origin
    scale = timeline.PLOT_W / total
    groups = sorted(bars(root), key=lambda g: float(g.get("data-offset", 0)))
    by_start = sorted(steps, key=lambda s: s.started_at)
    assert [g.get("data-step") for g in groups] == [s.name for s in by_start]
    for g, s in zip(groups, by_start, strict=True):
        rect = g.find("s:rect", NS)
        assert rect is not None
        offset, seconds = s.started_at - origin, s.finished_at - s.started_at
        assert float(g.get("data-offset", "nan")) == pytest.approx(offset, abs=1e-6)
        assert float(g.get("data-seconds", "nan")) == pytest.approx(seconds, abs=1e-6)
        x = float(rect.get("x", "nan"))
        assert x == pytest.approx(timeline.PLOT_X + offset * scale, abs=SCALE_TOLERANCE)
        assert float(rect.get("width", "nan")) == pytest.approx(
            max(seconds * scale, 1), abs=SCALE_TOLERANCE
        )
        assert x + float(rect.get("width", 0)) <= timeline.PLOT_X + timeline.PLOT_W + 1


def test_a_replace_is_drawn_step_by_step_with_its_503_window(h: Harness) -> None:  # noqa: F811
    first(h)
    out = h.deploy("v2", "b" * 40)
    assert out.status == "success", out.summary
    steps = history(h, out.swap_id)  # type: ignore[arg-type]
    line, root = drawn(steps)
    check_geometry(steps, root)
    assert root.get("role") == "img"
    assert root.find("s:title", NS) is not None and root.find("s:desc", NS) is not None

    origin = steps[0].started_at
    on = next(s for s in steps if s.name == "maintenance_old")
    switched = next(s for s in steps if s.name == "switch_traffic")
    (band,) = root.findall("s:g[@class='window']", NS)
    assert float(band.get("data-start", "nan")) == pytest.approx(on.started_at - origin, abs=1e-6)
    assert float(band.get("data-end", "nan")) == pytest.approx(
        switched.finished_at - origin, abs=1e-6
    )
    rect = band.find("s:rect", NS)
    assert rect is not None
    scale = timeline.PLOT_W / line.total
    assert float(rect.get("x", "nan")) == pytest.approx(
        timeline.PLOT_X + (on.started_at - origin) * scale, abs=SCALE_TOLERANCE
    )
    assert "503 window" in "".join(band.itertext())
    assert line.failures == [] and root.findall("s:g[@class='restart']", NS) == []


def test_a_failed_health_check_is_marked_and_the_rollback_closes_the_window(
    h: Harness,  # noqa: F811
) -> None:
    first(h)
    h.provider.ex_set_status("web", 500)
    out = h.deploy("v2", "c" * 40)
    assert out.status == "failure", out.summary
    steps = history(h, out.swap_id)  # type: ignore[arg-type]
    line, root = drawn(steps)
    check_geometry(steps, root)

    (failed,) = root.findall("s:g[@class='bar failed']", NS)
    assert failed.get("data-step") == "health_check"
    label = "".join(failed.itertext())
    assert "health_check — failed" in label  # in words, not in colour only
    rect = failed.find("s:rect", NS)
    assert rect is not None and rect.get("fill") == "url(#hatch-failed)"
    assert rect.get("stroke-width") == "3"
    [bar] = line.failures
    assert "HTTP 500" in bar.log

    origin = steps[0].started_at
    off = next(s for s in steps if s.name == "rollback:maintenance_off_old")
    (band,) = root.findall("s:g[@class='window']", NS)
    assert float(band.get("data-end", "nan")) == pytest.approx(off.finished_at - origin, abs=1e-6)


def test_a_worker_killed_in_a_step_then_recovered_shows_the_restart(
    h: Harness,  # noqa: F811
) -> None:
    first(h)
    h.provider.ex_fail("detach_volume", Crash("killed in detach_volume"))
    with pytest.raises(Crash):
        h.deploy("v2", "d" * 40)
    time.sleep(0.05)  # the worker is down for a moment
    (out,) = h.restart().recover()
    now = time.time()
    steps = [
        *history(h, out.swap_id),  # type: ignore[arg-type]
        HistoryStep(RECOVERED_STEP, StepStatus.DONE, now, now, out.summary),
    ]
    interrupted = next(i for i, s in enumerate(steps) if s.status == StepStatus.STARTED)
    assert steps[interrupted].name == "detach_old"
    line, root = drawn(steps)
    check_geometry(steps, root)

    (marker,) = root.findall("s:g[@class='restart']", NS)
    resumed = steps[interrupted + 1]
    assert resumed.name.startswith("rollback:")
    assert float(marker.get("data-at", "nan")) == pytest.approx(
        resumed.started_at - steps[0].started_at, abs=1e-6
    )
    assert "worker restarted" in "".join(marker.itertext())
    # the page stayed on while the worker was down: one window, closed by the rollback
    (window,) = line.windows
    assert window.closed and window.end >= marker_at(marker)


def marker_at(marker: ET.Element) -> float:
    return float(marker.get("data-at", "nan"))


def test_hundreds_of_steps_keep_the_picture_bounded() -> None:
    steps = [HistoryStep(f"step{i}", StepStatus.DONE, 1000.0 + i, 1000.5 + i) for i in range(600)]
    line, root = drawn(steps)
    assert len(bars(root)) == timeline.MAX_BARS
    height = float(root.get("height", "nan"))
    assert height <= timeline.AXIS_H + (timeline.MAX_BARS + 1) * timeline.ROW_H + 24
    assert f"{600 - timeline.MAX_BARS} more steps" in "".join(root.itertext())
    ticks = root.findall("s:g[@class='axis']/s:text", NS)
    assert [t.text for t in ticks][:3] == ["0 s", "200 s", "400 s"]
    assert line.total == pytest.approx(599.5)


def test_no_steps_draws_an_empty_axis_without_failing() -> None:
    line, root = drawn([])
    assert line.bars == [] and line.windows == [] and bars(root) == []
