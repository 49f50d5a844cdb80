"""The assistant: LLM backends, workspace-scoped tools, the ReAct loop with its fast path,
guardrails, citations and confidence. ``fwa_api.routes.agents`` serves it."""
