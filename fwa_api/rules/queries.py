"""The rule catalogue of a workspace read from the store: the parameters its latest successful
run scored with, how often each rule fired there, and the verdicts on the closed cases citing
it."""

from __future__ import annotations

from functools import lru_cache

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fwa_api.rules.models import RuleCatalogue, RuleFeedback, RuleOut
from fwa_pipeline.domain.config import RuleParams, default_config
from fwa_pipeline.domain.feedback import Verdicts
from fwa_pipeline.store.cases import rule_verdicts
from fwa_pipeline.store.models import PipelineRun, RuleHit


@lru_cache(maxsize=1)
def catalogue() -> dict[str, RuleParams]:
    """The shipped rule catalogue (names, families, default parameters)."""
    return default_config().rules


_RULES = TypeAdapter(dict[str, RuleParams])


def rules_in_effect(
    session: Session, workspace_id: int
) -> tuple[str | None, dict[str, RuleParams]]:
    """The rule parameters the workspace's latest successful run scored with (from its config
    snapshot) and that run's id; the shipped catalogue and None before any run."""
    found = session.execute(
        select(PipelineRun.run_id, PipelineRun.config_snapshot)
        .where(PipelineRun.workspace_id == workspace_id, PipelineRun.status == "success")
        .order_by(PipelineRun.created_at.desc())
        .limit(1)
    ).first()
    if found is not None and isinstance(found.config_snapshot, dict):
        try:
            return found.run_id, _RULES.validate_python(found.config_snapshot.get("rules"))
        except ValidationError:
            pass  # a snapshot from an incompatible catalogue: say so by naming no run
    return None, catalogue()


def rule_catalogue(
    session: Session, workspace_id: int, rule_id: str | None = None
) -> RuleCatalogue:
    """Every rule (or only ``rule_id``) with its parameters in effect, its hits in the workspace
    and the feedback of the workspace's closed cases citing it, by rule id."""
    run_id, params = rules_in_effect(session, workspace_id)
    query = (
        select(RuleHit.rule_id, func.count(), func.count(func.distinct(RuleHit.claim_pk)))
        .where(RuleHit.workspace_id == workspace_id)
        .group_by(RuleHit.rule_id)
    )
    if rule_id is not None:
        params = {rule_id: params[rule_id]} if rule_id in params else {}
        query = query.where(RuleHit.rule_id == rule_id)
    counts = {rule: (hits, claims) for rule, hits, claims in session.execute(query)}
    verdicts = rule_verdicts(session, workspace_id, rule_id)
    rules = [
        RuleOut(
            rule_id=rule,
            **p.model_dump(),
            hits=counts.get(rule, (0, 0))[0],
            claims_hit=counts.get(rule, (0, 0))[1],
            feedback=RuleFeedback.of(verdicts.get(rule, Verdicts()), p.weight, p.cap),
        )
        for rule, p in sorted(params.items())
    ]
    return RuleCatalogue(parameters_run_id=run_id, rules=rules)
