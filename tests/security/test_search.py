"""ListTasks search text is text: SQL and LIKE metacharacters match themselves only."""

from __future__ import annotations

from security.conftest import World

from kiln.tasks.v1 import tasks_pb2

NAMES = ["100% done", "under_score", "O'Brien'; DROP TABLE tasks.tasks; --", "back\\slash", "plain"]


def test_search_with_sql_metacharacters_matches_literally(world: World) -> None:
    """`%`, `_`, a quote with `; DROP TABLE` and a backslash each find exactly the task whose
    name holds them; nothing is dropped (all tasks are still listed afterwards)."""
    person = world.register("searcher")
    for name in NAMES:
        world.create_task(person, name=name)

    def search(text: str) -> list[str]:
        found = world.tasks.ListTasks(
            tasks_pb2.ListTasksRequest(search=text), metadata=person.metadata, timeout=20
        )
        return sorted(t.task_name for t in found.tasks)

    assert search("%") == ["100% done"]
    assert search("_") == ["under_score"]
    assert search("'; DROP TABLE") == [NAMES[2]]
    assert search("'") == [NAMES[2]]
    assert search("\\") == ["back\\slash"]
    assert search("%_%") == []
    assert search("") == sorted(NAMES)
