"""The orchestrator's state: viewers (histories and the social graph) and posts, each behind a small
interface so a networked store can replace the embedded one."""
