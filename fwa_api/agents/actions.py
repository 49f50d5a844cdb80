"""The one action the assistant takes for its caller, queuing a pipeline run: only when the
user's own message asks for it, and only once the user confirms.

* ``asks_to_run``: whether a message asks to run or rescore, read from the user's words alone
  (a model's say-so, a tool's argument or text in a record never counts). Without it
  ``run_pipeline`` is not offered to the model, and a call to it is refused.
* When the model calls it, nothing is queued: the proposal is kept with the chat session
  (``hold``) and the reply says what would be queued and asks for a confirmation.
* The session's next message ends the proposal (``take``); only a confirmation (``confirms``)
  before it expires queues the run, in the workspace the request is scoped to.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from fwa_pipeline.store.models import ChatSession, utcnow

# A request starts a clause, after courtesies: "please rerun", "can you rescore the claims".
_COURTESY = re.compile(
    r"^(?:(?:please|pls|kindly|now|ok(?:ay)?|so|also|just|then|go ahead and|let'?s|"
    r"(?:can|could|would|will) (?:you|we)|(?:i|we) (?:want|need|would like|'?d like)"
    r"(?: you)? to)\s+)+"
)
_RERUN = r"re-?(?:run|score|process)"
_REQUEST = re.compile(
    rf"^(?:{_RERUN}\b"
    # A plain verb needs the pipeline (or a run of it) as its object: "run the numbers" is not
    # a request to run the pipeline.
    r"|(?:run|start|trigger|launch|queue|kick off|execute|schedule|redo)\b(?:\s+[\w-]+){0,3}?\s+"
    rf"(?:pipeline|scoring|rescoring|{_RERUN}|run|job)\b"
    # Scoring verbs need claims or scores: "score the new claims", "refresh the risk scores".
    r"|(?:score|process|recompute|recalculate|refresh)\b(?:\s+[\w-]+){0,3}?\s+"
    r"(?:claims|batch|batches|scores|scoring)\b"
    # Or a noun: "I want a rescore", "we need another pipeline run".
    rf"|(?:(?:i|we) (?:want|need|would like|'?d like)|do) (?:a |an |another |the )?(?:new )?"
    rf"(?:{_RERUN}|pipeline run)\b)"
)
_CLAUSE = re.compile(r"[.;:!?\n]+|,\s*|\s+(?:but|and then|then|and|so)\s+")
# "don't rerun", "no need to rescore", "without running": a message that says not to run is
# never read as one asking to, whatever else it says.
_REFUSAL = re.compile(
    r"\b(?:don'?t|do not|doesn'?t|does not|never|not|no need to|no|without|stop|cancel|avoid|"
    r"skip|instead of|rather than)\b(?:\s+[\w'-]+){0,3}?\s+"
    rf"(?:{_RERUN}|run|running|rerunning|rescoring|start|trigger|queue|launch|kick)\b"
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})

# A confirmation is a short reply made only of these words, with at least one affirmative.
_AFFIRMATIVE = frozenset(
    {"yes", "y", "yep", "yeah", "yup", "sure", "ok", "okay", "confirm", "confirmed", "proceed"}
    | {"ahead", "do", "queue", "run"}
)
_CONFIRMATION_WORDS = _AFFIRMATIVE | {"i", "go", "it", "please", "thanks", "thank", "you"}


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.translate(_APOSTROPHES).lower()).strip()


def asks_to_run(message: str) -> bool:
    """Whether the user's message asks to run (or rescore with) the pipeline."""
    text = _normal(message)
    if _REFUSAL.search(text):
        return False
    return any(_REQUEST.match(_COURTESY.sub("", clause.strip())) for clause in _CLAUSE.split(text))


def confirms(message: str) -> bool:
    """Whether a message is an explicit yes: "yes", "Yes, go ahead.", "confirm", "do it".
    A question, a condition or anything else ("yes but only new claims") is not."""
    text = _normal(message)
    if "?" in text:
        return False
    words = re.sub(r"[.,!]", " ", text).split()
    return (
        bool(words)
        and all(word in _CONFIRMATION_WORDS for word in words)
        and any(word in _AFFIRMATIVE for word in words)
    )


@dataclass(frozen=True, slots=True)
class PendingRun:
    force_reprocess: bool
    expires_at: dt.datetime

    def expired(self) -> bool:
        expires = self.expires_at
        if expires.tzinfo is None:  # SQLite hands timestamps back without their zone
            expires = expires.replace(tzinfo=dt.UTC)
        return expires <= utcnow()


def hold(
    engine: Engine, workspace_id: int, session_id: str, *, force_reprocess: bool, ttl_s: float
) -> PendingRun:
    """Keep a proposed run with the session until its next message; ``LookupError`` when the
    session is gone."""
    pending = PendingRun(force_reprocess, utcnow() + dt.timedelta(seconds=ttl_s))
    with engine.begin() as connection:
        held = connection.execute(
            update(ChatSession)
            .where(ChatSession.session_id == session_id, ChatSession.workspace_id == workspace_id)
            .values(
                pending_run_force_reprocess=pending.force_reprocess,
                pending_run_expires_at=pending.expires_at,
            )
        )
        if held.rowcount != 1:
            raise LookupError("session not found")
    return pending


def take(engine: Engine, workspace_id: int, session_id: str) -> PendingRun | None:
    """The session's proposed run, removed: of two requests racing on one session, only the one
    whose update removes it has it."""
    with engine.begin() as connection:
        row = connection.execute(
            select(
                ChatSession.pending_run_force_reprocess, ChatSession.pending_run_expires_at
            ).where(
                ChatSession.session_id == session_id,
                ChatSession.workspace_id == workspace_id,
                ChatSession.pending_run_expires_at.is_not(None),
            )
        ).first()
        if row is None:
            return None
        taken = connection.execute(
            update(ChatSession)
            .where(
                ChatSession.session_id == session_id,
                ChatSession.pending_run_expires_at == row.pending_run_expires_at,
            )
            .values(pending_run_force_reprocess=None, pending_run_expires_at=None)
        )
    if taken.rowcount != 1:
        return None
    return PendingRun(bool(row.pending_run_force_reprocess), row.pending_run_expires_at)


def _what(force_reprocess: bool) -> str:
    return "rescoring every claim" if force_reprocess else "scoring the claims not yet scored"


def ask_to_confirm(workspace: str, pending: PendingRun, ttl_s: float) -> str:
    minutes = max(1, round(ttl_s / 60))
    return (
        f"**Nothing is queued yet.** To queue a pipeline run for workspace **{workspace}** "
        f"({_what(pending.force_reprocess)}), reply **yes** as your next message in this "
        f"conversation within {minutes} minute{'s' if minutes != 1 else ''}; any other reply "
        "cancels it."
    )


def queued(workspace: str, job_id: str, force_reprocess: bool) -> str:
    return (
        f"Queued a pipeline run for workspace **{workspace}** ({_what(force_reprocess)}): job "
        f"`{job_id}`. The pipeline picks it up shortly; its progress shows in the run history."
    )


EXPIRED = (
    "The proposed pipeline run was not confirmed in time: nothing was queued. Ask again to run it."
)
NOT_ALLOWED = "Queuing a pipeline run needs the investigator role: nothing was queued."
