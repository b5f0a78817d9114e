"""The task spec printed in the CLI's README is one a user can submit as written."""

from __future__ import annotations

import re
from pathlib import Path

from kiln.cli import spec
from tasks import convert, validation
from tasks import spec as task_spec

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_spec() -> str:
    """The YAML block under "The task spec file"."""
    section = README.read_text().split("### The task spec file", 1)[1]
    found = re.search(r"```yaml\n(.*?)```", section, flags=re.S)
    assert found is not None, "no yaml block under 'The task spec file'"
    return found.group(1)


def test_readme_spec_parses_and_passes_the_servers_validation(tmp_path: Path) -> None:
    """The README's example spec loads with the CLI's parser and passes the tasks service's
    own validation (every placeholder and zip group names a variable), expanding to
    3 zipped style/palette pairs x 2 times x 2 images = 12 subtasks."""
    path = tmp_path / "task.yaml"
    path.write_text(readme_spec())
    request = spec.load(path)
    total = validation.validate(convert.task_spec(request), task_spec.Limits())
    assert total == 12
