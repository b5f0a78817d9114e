"""The Kiln tasks service: tasks, subtasks, dispatch, progress, watches, webhooks."""
