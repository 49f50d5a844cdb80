"""The assistant: LLM backends, workspace-scoped tools, the ReAct loop with its fast path,
guardrails, citations and confidence. ``turn`` runs one chat turn (prepared, answered, recorded)
and ``routes`` serves it."""
