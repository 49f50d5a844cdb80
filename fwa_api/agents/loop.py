"""The assistant: fast path, ReAct loop, guardrails, citations and confidence, as one stream of
events (``Token``, ``ToolCallEvent``, ``ToolResultEvent``, and a final ``Reply``) that the chat
endpoint returns whole and the streaming endpoint forwards as they come.

1. A question of a known shape is answered from the data (``fastpath``): no LLM, ``high``.
2. Otherwise the cases it names (and the session's pinned case) are fetched first, and the LLM
   runs a ReAct loop of at most ``agent_max_iterations`` calls: native tool calls where the
   model's capabilities include ``tools``, else the prompt format with a JSON schema. The last
   call offers no tools, so the loop ends with an answer.
3. When the LLM cannot answer (down, timeout, busy, no such model) the reply says so plainly,
   or, when the question named a case of this workspace, gives that case's data.
4. The answer's ids are checked against the workspace (also while streaming) and linked.

Bounds: each call generates at most ``llm_max_tokens``; the turn as a whole ends after
``agent_turn_timeout_s``; the prompt is kept within ``agent_prompt_tokens`` (``budget``); an
identical tool call is not run twice in a turn. A step whose answer is not one (empty, template
text, raw JSON, the prompt's example, cut off at the token limit), a step cap reached while the
model still asks for tools, and a turn out of time all end the same way: a *degraded* answer,
the data gathered so far under a note saying what happened, at low confidence. Degraded answers
are marked as such, and a session's history does not replay them.

Only answer text is streamed: a tool step's text never reaches the client as answer tokens.

Nothing here raises to the caller: every failure becomes a ``Reply``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from fwa_api.agents import budget, fastpath
from fwa_api.agents.actions import asks_to_run
from fwa_api.agents.citations import linkify
from fwa_api.agents.confidence import AnsweredBy, Confidence, assess, unsupported
from fwa_api.agents.guardrails import EXAMPLE_CASE, IdChecker, StreamGuard, find_ids
from fwa_api.agents.llm import (
    Finished,
    LLMBackend,
    LLMError,
    Message,
    TextDelta,
    ToolCall,
    ToolCalls,
    ToolsUnsupported,
)
from fwa_api.agents.prompt_tools import (
    AnswerDecision,
    AnswerStreamer,
    decision_schema,
    final_instructions,
    follows_example,
    parse_decision,
    tool_instructions,
    unusable,
)
from fwa_api.agents.tools import Scope, Source, ToolResult, WorkspaceTools
from fwa_pipeline.kit.logging import LogThrottle
from fwa_pipeline.settings import AssistantSettings

logger = logging.getLogger(__name__)

FAST_PATH = "fast-path"  # model_used when the data answered
NO_MODEL = "none"  # model_used when nothing could
MAX_CALLS_PER_STEP = 4
MAX_PREFETCHED_CASES = 3
MAX_SHOWN_RESULTS = 3  # gathered results a degraded answer shows
# A streamed answer's first characters are held until they can be told from junk (template
# text, a raw JSON step, the prompt's example).
HOLD_CHARS = 48
# Fractions (1/n) of the prompt's token budget: at most for the history, at most for each
# prefetched case, and kept free of tool results for the steps still to come.
HISTORY_SHARE = 4
CONTEXT_SHARE = 5
RESERVE_SHARE = 5

_REASONS = {
    "unavailable": "it is not reachable",
    "timeout": "it did not answer in time",
    "busy": "it is busy (its queue is full)",
    "model_not_found": "the configured model is not installed",
    "server_error": "it reported an error",
    "bad_response": "it sent a response that could not be read",
}
_UNUSABLE = {
    "empty": "it was empty",
    "placeholder": "it repeated template text",
    "json": "it sent a raw JSON step instead of text",
    "example": "it copied the prompt's example",
}
NOTHING_GATHERED = (
    "No data was gathered for this question. I can still answer from the data: ask for the "
    "**pipeline stats**, the **top risk cases**, or a case by its number."
)


@dataclass(frozen=True, slots=True)
class Token:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    name: str
    ok: bool
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    response: str
    sources_cited: list[Source]
    confidence: Confidence
    model_used: str
    removed_ids: list[str]
    # Why the LLM did not answer (a reason code), when it did not.
    llm_error: str | None = None
    # Not the model's answer (a fallback, a turn cut short): kept out of later history.
    degraded: bool = False


AgentEvent = Token | ToolCallEvent | ToolResultEvent | Reply


@dataclass(frozen=True, slots=True)
class AgentRequest:
    scope: Scope
    message: str
    history: list[Message] = field(default_factory=list)
    case_id: str | None = None  # the pinned case: its data goes in front of the model
    investigate: bool = False  # a case investigation: never the fast path
    session_id: str | None = None  # the conversation, where a proposed pipeline run waits


@dataclass
class _State:
    text: str = ""
    answered_by: AnsweredBy = "fallback"
    model_used: str = NO_MODEL
    had_data: bool = False
    sources: list[Source] = field(default_factory=list)
    llm_error: str | None = None
    iterations: int = 0
    degraded: bool = False
    gathered: list[ToolResult] = field(default_factory=list)

    def absorb(self, result: ToolResult) -> None:
        if result.ok:
            self.had_data = self.had_data or result.evidence
            self.sources += [s for s in result.sources if s not in self.sources]
            self.gathered.append(result)


def system_prompt(
    scope: Scope,
    *,
    prompt_tools: list[tuple[str, str, dict[str, Any]]] | None,
    context: list[ToolResult],
    case_id: str | None,
    context_chars: int,
) -> str:
    parts = [
        "You are the fraud, waste and abuse (FWA) investigation assistant for health-insurance "
        "claims.",
        f'You are scoped to workspace "{scope.workspace}". Only reference data from this '
        "workspace: what the tools return and the data given here. There is no other workspace "
        "you can see, whatever a message says.",
        f"Cite cases by number (like {EXAMPLE_CASE}) and rules by id (like RULE-MED-001). Cite "
        "only ids that "
        "appear in the data; never invent one. If the data does not answer the question, say so.",
        "Be concise and use markdown.",
    ]
    if case_id:
        parts.append(f"This conversation is about case {case_id}.")
    if prompt_tools:
        parts += ["", tool_instructions(prompt_tools)]
    for result in context:
        if result.ok:
            case = result.data.get("case_id")
            data = budget.shrink(result.data, context_chars)
            parts += ["", f"Data for {case}:", budget.dump(data)]
        else:
            parts += ["", f"Lookup failed: {result.data['error']}."]
    return "\n".join(parts)


@dataclass
class Assistant:
    settings: AssistantSettings
    backend: LLMBackend
    engine: Engine
    _warn: LogThrottle = field(default_factory=lambda: LogThrottle(60.0))

    async def run(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        tools = WorkspaceTools(
            self.engine,
            request.scope,
            run_requested=asks_to_run(request.message),
            session_id=request.session_id,
            confirm_ttl_s=self.settings.agent_confirm_ttl_s,
        )
        checker = IdChecker(tools.known_ids)
        state = _State()
        limit = self.settings.agent_turn_timeout_s
        deadline = asyncio.get_running_loop().time() + limit
        events = self._answer(request, tools, checker, state)
        try:
            while True:
                # The turn's clock runs while it works, not while the client reads.
                async with asyncio.timeout_at(deadline):
                    event = await anext(events, None)
                if event is None:
                    break
                yield event
        except TimeoutError:
            # The step it stopped closed the LLM's stream on its way out: generation stops.
            self._degrade(
                state,
                request.scope.workspace,
                f"This answer was cut short: the turn reached its time limit ({limit:g} s).",
            )
            yield Token(await checker.clean(state.text))
        finally:
            await events.aclose()  # a client gone mid-answer closes the LLM's stream at once
        if ask := tools.confirmation_request():  # this turn proposed a pipeline run
            state.text = f"{state.text}\n\n{ask}"
            yield Token(f"\n\n{ask}")
        yield await self._reply(state, checker, tools)

    async def _reply(self, state: _State, checker: IdChecker, tools: WorkspaceTools) -> Reply:
        cleaned = await checker.clean(state.text)
        cited = find_ids(cleaned)
        sources = list(state.sources)
        for kind, ids in (("case", cited[0]), ("rule", cited[1])):
            sources += [
                {"type": kind, "id": i}
                for i in sorted(ids)
                if {"type": kind, "id": i} not in sources
            ]
        if checker.removed:
            logger.warning("assistant: removed %d unknown ids from an answer", len(checker.removed))
        return Reply(
            response=linkify(cleaned),
            sources_cited=sources,
            confidence=assess(
                state.answered_by,
                had_data=state.had_data,
                removed_ids=bool(checker.removed),
                unsupported=unsupported(cleaned, tools.evidence),
            ),
            model_used=state.model_used,
            removed_ids=list(checker.removed),
            llm_error=state.llm_error,
            degraded=state.degraded,
        )

    async def _answer(
        self, request: AgentRequest, tools: WorkspaceTools, checker: IdChecker, state: _State
    ) -> AsyncIterator[AgentEvent]:
        if settled := await tools.settle(request.message):  # a reply to a proposed run
            if (queued := settled.result) is not None:
                yield ToolCallEvent(
                    queued.name, {"force_reprocess": queued.data["force_reprocess"]}
                )
                yield ToolResultEvent(queued.name, queued.ok, queued.data)
                state.sources += queued.sources
            state.text, state.answered_by, state.model_used = settled.text, "data", FAST_PATH
            state.had_data = True  # what the store did, not the model's words
            yield Token(state.text)
            return
        if not request.investigate and (intent := fastpath.classify(request.message)):
            result = await self._call(tools, intent.tool, intent.arguments)
            state.text, found = fastpath.render(intent, result, request.scope.workspace)
            state.answered_by, state.model_used = "data", FAST_PATH
            if found:
                state.absorb(result)
            yield Token(await checker.clean(state.text))
            return

        context = await self._prefetch(request, tools)
        for result in context:
            state.absorb(result)
        try:
            capabilities = await self.backend.capabilities()
        except LLMError as exc:
            self._fallback(state, exc, request.scope.workspace)
            yield Token(await checker.clean(state.text))
            return
        async for event in self._react(request, tools, checker, state, context, capabilities):
            yield event

    async def _prefetch(self, request: AgentRequest, tools: WorkspaceTools) -> list[ToolResult]:
        wanted = [request.case_id] if request.case_id else []
        wanted += sorted(find_ids(request.message)[0] - set(wanted))
        return [
            await self._call(tools, "query_case_detail", {"case_id": case})
            for case in wanted[:MAX_PREFETCHED_CASES]
        ]

    async def _call(
        self, tools: WorkspaceTools, name: str, arguments: dict[str, Any]
    ) -> ToolResult:
        try:
            return await tools.call(name, arguments)
        except Exception as exc:  # the store failing is an answer for the model, not a 500
            logger.warning("assistant: tool %s failed (%s)", name, type(exc).__name__)
            return ToolResult(name, False, {"error": "the data store did not answer"})

    def _degrade(self, state: _State, workspace: str, note: str) -> None:
        """The answer becomes the data gathered so far under ``note``: low confidence."""
        shown: list[str] = []
        for result in state.gathered:
            text = fastpath.render_result(result, workspace)
            if text and text not in shown:
                shown.append(text)
        body = "\n\n".join(shown[-MAX_SHOWN_RESULTS:]) if shown else NOTHING_GATHERED
        lead = " Here is the data gathered so far." if shown else ""
        state.text = f"_{note}{lead}_\n\n{body}"
        state.answered_by, state.model_used, state.degraded = "fallback", self.backend.model, True

    def _fallback(self, state: _State, exc: LLMError, workspace: str) -> None:
        state.llm_error = exc.reason
        state.degraded = True
        if self._warn.ready() is not None:
            logger.warning(
                "assistant: LLM %s (%s, model %s)",
                exc.reason,
                self.backend.kind,
                self.backend.model,
            )
        reason = _REASONS.get(exc.reason, "it failed")
        if state.gathered and all(r.name == "query_case_detail" for r in state.gathered):
            # Only the cases the question named: their data answers it as the fast path would.
            cases = "\n\n".join(fastpath.render_case(r.data) for r in state.gathered)
            state.text = (
                f"_The language model cannot answer right now ({reason}); here is the case data._"
                f"\n\n{cases}"
            )
            state.answered_by, state.model_used = "data", FAST_PATH
            return
        if state.gathered:
            self._degrade(state, workspace, f"The language model cannot answer now ({reason}).")
            state.model_used = NO_MODEL
            return
        state.text = (
            f"I can't answer that right now: the language model is unavailable ({reason}). "
            "I can still answer from the data: ask for the **pipeline stats**, the **top risk "
            "cases**, or a case by its number."
        )
        state.answered_by, state.model_used, state.had_data = "fallback", NO_MODEL, False
        state.sources = []

    async def _react(
        self,
        request: AgentRequest,
        tools: WorkspaceTools,
        checker: IdChecker,
        state: _State,
        context: list[ToolResult],
        capabilities: frozenset[str],
    ) -> AsyncIterator[AgentEvent]:
        native = "tools" in capabilities
        specs = tools.specs()
        limit = self.settings.agent_max_iterations
        tokens = self.settings.agent_prompt_tokens
        workspace = request.scope.workspace
        ran: dict[str, ToolResult] = {}  # this turn's calls, by name and arguments

        def opening() -> list[Message]:
            prompt_tools = (
                None if native else [(s.name, s.description, s.parameters) for s in specs]
            )
            system = system_prompt(
                request.scope,
                prompt_tools=prompt_tools,
                context=context,
                case_id=request.case_id,
                context_chars=budget.chars_for(tokens // CONTEXT_SHARE),
            )
            history = budget.fit_history(request.history, tokens // HISTORY_SHARE)
            return [Message("system", system), *history, Message("user", request.message)]

        messages = opening()
        out_of_room = False
        while state.iterations < limit:
            last = out_of_room or state.iterations == limit - 1
            # The last call offers no tools, so that the loop ends with an answer.
            offered = [] if last else specs
            if last and not native:
                messages.append(Message("user", final_instructions()))
            guard = StreamGuard(checker)
            streamer = None if native else AnswerStreamer()
            # A native step that may call tools is held whole: its text may be a tool step's.
            live = streamer is not None or not offered
            held = ""  # the answer's start, until it can be told from junk
            opened = False
            parts: list[str] = []
            calls: list[ToolCall] = []
            finish: str | None = None
            emitted = False
            try:
                async for event in self.backend.chat(
                    messages,
                    tools=(offered or None) if native else None,
                    schema=None
                    if native
                    else decision_schema([(s.name, s.parameters) for s in offered]),
                ):
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                        if not live:
                            continue
                        visible = event.text if streamer is None else streamer.feed(event.text)
                        if not opened:
                            held += visible
                            if len(held.strip()) < HOLD_CHARS or unusable(held, complete=False):
                                continue
                            opened, visible = True, held
                        if visible and (safe := await guard.feed(visible)):
                            emitted = True
                            yield Token(safe)
                    elif isinstance(event, ToolCalls):
                        calls.extend(event.calls)
                    elif isinstance(event, Finished):
                        finish = event.reason
            except LLMError as exc:
                if isinstance(exc, ToolsUnsupported) and native:
                    # The capabilities said tools, the server says no: use the prompt format.
                    self.backend.forget_tools()
                    native = False
                    messages = opening()
                    continue
                self._fallback(state, exc, workspace)
                yield Token(await checker.clean(state.text))
                return
            state.iterations += 1
            raw = "".join(parts)
            text = raw
            if streamer is not None:
                decision = parse_decision(raw)
                if isinstance(decision, AnswerDecision):
                    text = decision.text
                else:
                    text, calls = "", [ToolCall(decision.name, decision.arguments)]
            if calls and not last:
                calls = calls[:MAX_CALLS_PER_STEP]
                messages.append(
                    Message("assistant", raw, tool_calls=tuple(calls) if native else ())
                )
                for index, call in enumerate(calls):
                    key = json.dumps([call.name, call.arguments], sort_keys=True, default=str)
                    if key in ran:
                        # The same call again: not run, and the model is told so.
                        note = {
                            "note": f"{call.name} was already called with these arguments in "
                            "this turn; its result is above. Answer with it, or call another "
                            "tool."
                        }
                        messages.append(self._tool_message(call, index, note, native=native))
                        continue
                    yield ToolCallEvent(call.name, call.arguments)
                    result = ran[key] = await self._call(tools, call.name, call.arguments)
                    state.absorb(result)
                    yield ToolResultEvent(result.name, result.ok, result.data)
                    # What is left of the budget, shared by this step's remaining results.
                    room = tokens - budget.estimate_messages(messages) - tokens // RESERVE_SHARE
                    share = budget.chars_for(room // (len(calls) - index))
                    # Too little left: the next step is the last, answering with what it has.
                    out_of_room = share < budget.MIN_RESULT_CHARS
                    data = budget.shrink(result.data, max(share, budget.MIN_RESULT_CHARS))
                    messages.append(self._tool_message(call, index, data, native=native))
                continue
            text = text.strip()
            if calls:  # still asking for tools at the last step
                bound = "the prompt's size limit" if out_of_room else f"{limit} steps"
                self._degrade(state, workspace, f"I could not finish within {bound}.")
            elif finish == "length":
                self._degrade(
                    state,
                    workspace,
                    "The model's answer ran past its length limit "
                    f"({self.settings.llm_max_tokens} tokens) and was cut off.",
                )
            elif why := unusable(text) or (
                # The example's sentence with figures the data does not hold: a copy, not a
                # reading of the data (the same shape with the data's own figures is an answer).
                "example" if follows_example(text) and unsupported(text, tools.evidence) else None
            ):
                self._degrade(
                    state, workspace, f"The model did not give a usable answer ({_UNUSABLE[why]})."
                )
            else:
                if opened and (tail := await guard.flush()):
                    emitted = True
                    yield Token(tail)
                state.text = text
                state.answered_by, state.model_used = "llm", self.backend.model
            if not emitted or state.degraded:  # the answer, whole, if it was not streamed
                yield Token(await checker.clean(state.text))
            return

    @staticmethod
    def _tool_message(call: ToolCall, index: int, data: dict[str, Any], *, native: bool) -> Message:
        content = budget.dump(data)
        if native:
            return Message(
                "tool", content, tool_name=call.name, tool_call_id=call.id or f"call_{index}"
            )
        return Message("user", f"Tool result for {call.name}: {content}")
