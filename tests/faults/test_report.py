"""docs/reliability.md's generator: a row per fault, the hostile inputs when there are any."""

from __future__ import annotations

from pathlib import Path

from tests.faults.report import hostile_inputs, main, render_reliability
from tests.faults.results import FaultResult, SuiteResults


def a_fault(name: str, **figures: object) -> FaultResult:
    values: dict[str, object] = {
        "fault": name,
        "window_s": 4.5,
        "reads": 600,
        "read_rate": 133.3,
        "reads_failed": 0,
        "reads_retried": 2,
        "read_errors": {},
        "slowest_read_s": 2.7,
        "submissions": 9,
        "acknowledged": 7,
        "lost": 0,
        "duplicated": 0,
        "unacknowledged_stored": 1,
        "built": 7,
        "restarted_s": 0.15,
        "recover_s": 1.9,
        "event_s": 0.4,
        "replicas_wanted": 3,
        "replicas_running": 3,
    }
    values.update(figures)
    return FaultResult.model_validate(values)


RESULTS = SuiteResults(
    started="2026-12-07T12:00:00+00:00",
    cpus=2,
    faults=[a_fault("router"), a_fault("api", reads_failed=3, read_errors={"HTTP 502": 3})],
)


def table_rows(page: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in page.splitlines()
        if line.startswith("| `")
    ]


def test_each_fault_is_a_row_with_its_figures() -> None:
    rows = table_rows(render_reliability(RESULTS, None))
    assert [row[0] for row in rows] == ["`router`", "`api`"]
    router, api = rows
    assert router[1] == "600 reads (133.3/s), 9 submissions in 4.5 s"
    assert router[2:10] == ["0", "2", "2.70 s", "7 of 9", "0", "0", "1", "7 of 7"]
    assert router[10:] == ["0.15 s", "1.90 s", "0.40 s", "3 / 3"]
    assert api[2] == "3 (3: HTTP 502)"


def test_without_the_hostile_inputs_file_the_page_says_so(tmp_path: Path) -> None:
    assert hostile_inputs(tmp_path / "absent.py") is None
    page = render_reliability(RESULTS, None)
    assert "which this tree does not have yet" in page


def test_hostile_inputs_written_out_are_read_without_running_the_module(tmp_path: Path) -> None:
    module = tmp_path / "test_hostile_inputs.py"
    module.write_text(
        "raise RuntimeError('not to be run')\n"
        "HOSTILE_INPUTS = [\n"
        "    ('../../etc/passwd as a blob name', '422 invalid-name'),\n"
        "    {'input': b'\\x00\\x00\\x00', 'answer': '400 | bad'},\n"
        "]\n"
    )
    rows = hostile_inputs(module)
    assert rows == [
        ("../../etc/passwd as a blob name", "422 invalid-name"),
        ("b'\\x00\\x00\\x00'", "400 | bad"),
    ]
    page = render_reliability(RESULTS, rows)
    assert "| `../../etc/passwd as a blob name` | `422 invalid-name` |" in page
    assert "`400 \\| bad`" in page  # a pipe would split the table's cell


def test_hostile_inputs_built_by_code_are_read_by_importing_the_module(tmp_path: Path) -> None:
    module = tmp_path / "test_hostile_inputs.py"
    module.write_text("HOSTILE_INPUTS = [('a' * n, f'{n} refused') for n in (1, 2)]\n")
    assert hostile_inputs(module) == [("a", "1 refused"), ("aa", "2 refused")]


def test_the_command_writes_the_page_from_a_results_file(tmp_path: Path) -> None:
    results = tmp_path / "faults.json"
    results.write_text(RESULTS.model_dump_json())
    output = tmp_path / "reliability.md"
    assert (
        main(
            [
                "--results",
                str(results),
                "--hostile",
                str(tmp_path / "no.py"),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    assert output.read_text() == render_reliability(RESULTS, None)


def test_named_rows_from_several_modules_read_as_name_and_what_was_sent(tmp_path: Path) -> None:
    api, router = tmp_path / "test_api.py", tmp_path / "test_router.py"
    api.write_text("HOSTILE_INPUTS = [('yaml bomb', '333 bytes of aliases', '422')]\n")
    router.write_text("HOSTILE_INPUTS = [('connect', b'CONNECT x:443', '501')]\n")
    assert hostile_inputs(api, tmp_path / "absent.py", router) == [
        ("yaml bomb: 333 bytes of aliases", "422"),
        ("connect: b'CONNECT x:443'", "501"),
    ]
