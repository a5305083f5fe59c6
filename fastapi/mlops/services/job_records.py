"""Reading a job record as Redis holds it (one JSON value per field) into a JobInfo,
with a typed error saying what is wrong when someone or something wrote it badly."""

from __future__ import annotations

import json

from pydantic import ValidationError

from mlops.schemas import JobInfo


class UnknownJob(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no training job {job_id!r}")


class MalformedJob(ValueError):
    """A stored job record that does not parse (the message says which field, how)."""


def parse_job(raw: dict[str, str]) -> JobInfo:
    if not raw:
        raise MalformedJob("the job is listed but its record is gone")
    fields = {}
    for name, text in raw.items():
        try:
            fields[name] = json.loads(text)
        except ValueError:
            raise MalformedJob(f"field {name!r} is not JSON: {text[:80]!r}") from None
    try:
        return JobInfo.model_validate(fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "record"
        raise MalformedJob(f"field {where!r}: {problem['msg']}") from None
