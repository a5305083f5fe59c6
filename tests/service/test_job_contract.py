"""The job record's contract: each writer's part names fields of the record, and a
writer that uses a name the record does not have fails the type check (`make lint`)."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path

import pytest
from mypy import api as mypy

from mlops.contracts.jobs import JobInfo, JobOutcome, NewJob, SearchProgress

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("part", [NewJob, SearchProgress, JobOutcome])
def test_every_part_a_writer_sends_is_a_field_of_the_record(part) -> None:
    fields = JobInfo.model_fields

    assert set(typing.get_type_hints(part)) <= set(fields)


def test_a_writer_using_a_name_the_record_lacks_fails_the_type_check(tmp_path: Path) -> None:
    writer = tmp_path / "writer.py"
    writer.write_text(
        textwrap.dedent(
            """
            from mlops.contracts.jobs import JobOutcome

            renamed: JobOutcome = {"model_versoin": "3"}
            kept: JobOutcome = {"model_version": "3"}
            """
        )
    )

    out, _, status = mypy.run(["--config-file", str(ROOT / "mypy.ini"), str(writer)])

    assert status == 1
    assert 'Extra key "model_versoin" for TypedDict "JobOutcome"' in out
    assert out.count("error:") == 1, out
