"""The frames IO manager and the incremental selection plan."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fwa_pipeline.defs import io
from fwa_pipeline.defs.io import COLUMNS, ArrowFramesIOManager
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.domain.config import RuleParams, default_config
from fwa_pipeline.domain.rules import REGISTRY, Key
from fwa_pipeline.steps import frame_files
from fwa_pipeline.steps.claims import in_scope
from fwa_pipeline.steps.selection import plan_history, split_rules
from tests.pipeline import batch
from tests.pipeline.conftest import Pipeline, materializations


def io_manager(tmp_path: Path) -> ArrowFramesIOManager:
    return ArrowFramesIOManager(store=StoreResource(data_dir=str(tmp_path)), base_dir=None)


# The IO manager only reads the partition key; a static definition needs no instance.
PARTITIONS = dg.StaticPartitionsDefinition(["acme"])


def contexts(
    run_id: str, input_metadata: dict[str, object] | None = None
) -> tuple[dg.OutputContext, dg.InputContext]:
    key = dg.AssetKey("rule_hits")
    output = dg.build_output_context(
        asset_key=key, partition_key="acme", run_id=run_id, asset_partitions_def=PARTITIONS
    )
    upstream = dg.build_output_context(asset_key=key, partition_key="acme", run_id=run_id)
    return output, dg.build_input_context(
        asset_key=key,
        partition_key="acme",
        upstream_output=upstream,
        asset_partitions_def=PARTITIONS,
        definition_metadata=input_metadata,
    )


def test_frames_round_trip_with_types_and_json_evidence(tmp_path: Path) -> None:
    manager = io_manager(tmp_path)
    hits = pd.DataFrame(
        {
            "claim_pk": pd.array([1, 2], dtype="Int64"),
            "claim_id": ["MC-1", "MC-2"],
            "severity": [1.0, 0.5],
            "service_date": pd.to_datetime(["2024-02-01", "2024-02-02"]),
            "evidence": [{"copies": 2, "codes": ["99213"]}, {"z": None}],
        }
    )
    output, input_ = contexts("run-1")
    manager.handle_output(output, {"hits": hits, "empty": hits.iloc[0:0]})

    loaded = manager.load_input(input_)

    assert set(loaded) == {"hits", "empty"}
    pd.testing.assert_frame_equal(loaded["hits"], hits)
    assert loaded["empty"].empty and list(loaded["empty"].columns) == list(hits.columns)
    assert (tmp_path / "dagster_io" / "acme" / "rule_hits" / "run-1" / "hits.arrow").exists()


def test_a_later_run_replaces_the_frames_and_leaves_one_copy(tmp_path: Path) -> None:
    manager = io_manager(tmp_path)
    for run_id, value in (("run-1", 1), ("run-2", 2)):
        output, _ = contexts(run_id)
        manager.handle_output(output, pd.DataFrame({"x": [value]}))

    _, input_ = contexts("run-3")
    assert manager.load_input(input_)["x"].tolist() == [2]
    asset_dir = tmp_path / "dagster_io" / "acme" / "rule_hits"
    assert sorted(p.name for p in asset_dir.iterdir() if p.is_dir()) == ["run-2"]


def test_loading_what_was_never_materialised_says_so(tmp_path: Path) -> None:
    _, input_ = contexts("run-1")
    with pytest.raises(dg.Failure, match="has not been materialised"):
        io_manager(tmp_path).load_input(input_)


def test_a_pointer_to_a_version_that_is_gone_is_no_version(tmp_path: Path) -> None:
    # As a run racing another of the same workspace could leave it: readers rebuild, never
    # fail on it for ever.
    frame_files.publish(tmp_path, "run-1", {"medical": pd.DataFrame({"x": [1]})})
    shutil.rmtree(tmp_path / "run-1")
    assert frame_files.load(tmp_path) is None


def test_the_default_plan_reads_history_by_key_and_peers_narrowly() -> None:
    config = default_config()
    medical = plan_history(config, "medical")
    assert medical.same_day == ("member_id", "provider_id")
    assert medical.windows == {}
    assert medical.peer_rules == ("RULE-MED-005", "RULE-MED-010", "RULE-MED-011", "RULE-MED-012")
    # What the peer rules declare they read, with what enrichment needs (provider, code).
    assert medical.peer_columns == (
        "claim_id",
        "member_id",
        "provider_id",
        "cpt_code",
        "modifier",
        "amount_billed",
    )
    assert medical.peer_lookback_days == 365
    pharmacy = plan_history(config, "pharmacy")
    assert pharmacy.same_day == ("member_id",)
    assert pharmacy.windows == {"member_id": 365}
    assert pharmacy.peer_rules == ("RULE-RX-010",)
    assert pharmacy.peer_columns == (
        "claim_id",
        "member_id",
        "prescriber_id",
        "pharmacy_id",
        "fill_date",
        "ndc_code",
        "days_supply",
        "amount_billed",
    )

    dates = pd.Series(pd.to_datetime(["2024-03-01", "2024-02-01"]))
    assert pharmacy.date_windows(dates) == {"member_id": (dt.date(2023, 2, 1), dt.date(2025, 3, 1))}


def test_disabled_rules_need_no_history_and_unknown_rules_are_refused() -> None:
    config = default_config()
    rules = {
        rule_id: params.model_copy(update={"enabled": rule_id == "RULE-MED-006"})
        for rule_id, params in config.rules.items()
    }
    only_line_edits = plan_history(config.model_copy(update={"rules": rules}), "medical")
    assert (only_line_edits.same_day, only_line_edits.windows, only_line_edits.peer_rules) == (
        (),
        {},
        (),
    )
    assert only_line_edits.peer_columns == ()

    # A configured rule no code implements has no facts to plan by: refused, as evaluate does.
    unknown = RuleParams(
        name="New", family="medical", version="1", weight=1, cap=1, lookback_days=30
    )
    extended = config.model_copy(update={"rules": {**config.rules, "RULE-MED-099": unknown}})
    with pytest.raises(KeyError, match="RULE-MED-099 is configured but no rule implements it"):
        plan_history(extended, "medical")


def test_the_peer_frame_carries_what_the_enabled_peer_rules_read() -> None:
    config = default_config()
    rules = {
        rule_id: params.model_copy(update={"enabled": rule_id == "RULE-MED-012"})
        for rule_id, params in config.rules.items()
    }
    plan = plan_history(config.model_copy(update={"rules": rules}), "medical")
    assert plan.peer_rules == ("RULE-MED-012",)
    assert plan.peer_columns == ("claim_id", "provider_id", "cpt_code", "amount_billed")


def test_a_rule_reading_a_column_its_claims_lack_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    facts = replace(REGISTRY["RULE-MED-012"], reads=("amount_billed", "fill_date"))
    monkeypatch.setitem(REGISTRY, "RULE-MED-012", facts)
    with pytest.raises(ValueError, match="RULE-MED-012 reads fill_date: not a medical claim"):
        plan_history(default_config(), "medical")


def test_every_catalogue_rule_is_registered_with_its_facts() -> None:
    # Selection plans each rule's history from its key and columns; a rule registered without
    # them fails at import (tests/unit/domain/rules/test_registration.py).
    for rule_id in default_config().rules:
        facts = REGISTRY[rule_id]
        assert isinstance(facts.key, Key) and facts.reads, rule_id


def test_split_rules_partitions_the_enabled_rules() -> None:
    config = default_config()
    own, peers = split_rules(config, ["RULE-MED-005", "RULE-RX-010"])
    assert set(peers.enabled_rules()) == {"RULE-MED-005", "RULE-RX-010"}
    assert set(own.enabled_rules()) == set(config.enabled_rules()) - set(peers.enabled_rules())


def test_in_scope_keeps_the_new_claims_and_cuts_columns_first() -> None:
    frame = pd.DataFrame(
        {"claim_pk": [1, 2, 3], "x": ["a", "b", "c"], "in_scope": [True, False, True]}
    )

    assert in_scope(frame).equals(frame.iloc[[0, 2]])
    assert in_scope(frame, ["claim_pk"]).equals(frame.loc[[0, 2], ["claim_pk"]])
    everything = frame.assign(in_scope=True)
    assert in_scope(everything) is everything  # a full run's frame is not copied
    assert in_scope(everything, ["x"]).equals(everything[["x"]])


def test_an_input_reads_only_the_columns_it_names(tmp_path: Path) -> None:
    manager = io_manager(tmp_path)
    hits = pd.DataFrame(
        {
            "claim_pk": [1, 2],
            "severity": [1.0, 0.5],
            "evidence": [{"copies": 2}, {"z": None}],
        }
    )
    output, input_ = contexts("run-1", {COLUMNS: ["claim_pk", "severity"]})
    manager.handle_output(output, hits)

    loaded = manager.load_input(input_)

    pd.testing.assert_frame_equal(loaded, hits[["claim_pk", "severity"]])
    # Of a dict of frames, columns are chosen per frame; a frame not named is read whole.
    manager.handle_output(contexts("run-2")[0], {"hits": hits, "other": hits})
    with pytest.raises(ValueError, match="chosen by a mapping"):
        manager.load_input(input_)
    by_frame = contexts("run-2", {COLUMNS: {"hits": ["claim_pk"]}})[1]
    loaded = manager.load_input(by_frame)
    pd.testing.assert_frame_equal(loaded["hits"], hits[["claim_pk"]])
    pd.testing.assert_frame_equal(loaded["other"], hits)


# --------------------------------------------------------------------------- writes behind a run


@contextmanager
def held_writes(
    monkeypatch: pytest.MonkeyPatch, error: Exception | None = None
) -> Iterator[threading.Event]:
    """The run's background writes wait until the yielded event is set, then fail with ``error``
    if given."""
    release = threading.Event()
    real = io.publish

    def publish(*args: object) -> None:
        release.wait(timeout=30)
        if error is not None:
            raise error
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(io, "publish", publish)
    yield release
    release.set()


def test_a_frame_still_being_written_loads_as_it_will_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = io_manager(tmp_path)
    manager.setup_for_execution(dg.build_init_resource_context())
    hits = pd.DataFrame(
        {
            "claim_pk": pd.array([3, 1], dtype="Int64"),
            "service_date": pd.to_datetime(["2024-02-01", "2024-02-02"]),
            "evidence": [{"copies": 2, "codes": ["99213"]}, None],
        },
        index=[7, 9],  # not kept: a file has no index either
    )
    output, input_ = contexts("run-1")
    with held_writes(monkeypatch) as release:
        manager.handle_output(output, {"hits": hits})
        in_memory = manager.load_input(input_)
        assert not (tmp_path / "dagster_io" / "acme" / "rule_hits" / "current").exists()
        release.set()
    manager.teardown_after_execution(dg.build_init_resource_context())

    from_file = manager.load_input(input_)
    pd.testing.assert_frame_equal(in_memory["hits"], from_file["hits"])
    pd.testing.assert_frame_equal(from_file["hits"], hits.reset_index(drop=True))


def test_a_failed_write_leaves_no_older_copy_and_fails_its_next_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = io_manager(tmp_path)
    manager.handle_output(contexts("run-1")[0], pd.DataFrame({"x": [1]}))  # outside a run
    manager.setup_for_execution(dg.build_init_resource_context())
    output, input_ = contexts("run-2")
    with held_writes(monkeypatch, OSError("No space left on device")) as release:
        manager.handle_output(output, pd.DataFrame({"x": [2]}))
        assert manager.load_input(input_)["x"].tolist() == [2]  # from memory, while pending
        release.set()
        failure: dg.Failure | None = None
        for _ in range(500):  # the write fails in the background
            try:
                # Until the failure is recorded, run-2's frame from memory; never run-1's.
                assert manager.load_input(input_)["x"].tolist() == [2]
            except dg.Failure as exc:
                failure = exc
                break
            time.sleep(0.01)

    assert failure is not None and "could not be written" in failure.description
    assert not (tmp_path / "dagster_io" / "acme" / "rule_hits" / "current").exists()
    with pytest.raises(dg.Failure, match=r"could not be written") as failed:
        manager.load_input(input_)
    # The cause is for operators (the Dagster UI), not in the description a job status shows.
    assert "No space left" not in failed.value.description
    assert "No space left" in failed.value.metadata["error"].value
    with pytest.raises(RuntimeError, match="frames not written"):
        manager.teardown_after_execution(dg.build_init_resource_context())
    with pytest.raises(dg.Failure, match="has not been materialised"):
        io_manager(tmp_path).load_input(input_)


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_staged_frames_hold_no_member_dates_or_ages_and_only_their_owner_reads_them(
    store: str, request: pytest.FixtureRequest
) -> None:
    """A run's frames on disk: no column of a member's dates or age and no date of birth or
    death among the values (the after-death hits, found from the encrypted dates, say how many
    days after), in directories only their owner can enter and files only their owner can
    read, whatever the umask."""
    pipeline: Pipeline = request.getfixturevalue("pipeline" if store == "sqlite" else "pg_pipeline")
    pipeline.land(batch.batch_one())
    previous = os.umask(0o022)
    try:
        result = pipeline.run()
    finally:
        os.umask(previous)
    assert result.success
    found = materializations(pipeline.instance, result.run_id)
    assert found["rule_hits"]["hits_by_rule"]["RULE-MED-006"] == 1
    # Decrypted in memory for the one member who died (M2), and for nobody else.
    assert found["enriched_claims"]["death_dates_decrypted"] == 1
    stored = pipeline.query(
        "SELECT claim_id, evidence FROM rule_hits WHERE rule_id IN ('RULE-MED-006', 'RULE-RX-008')"
    )
    evidence = {c: e if isinstance(e, dict) else json.loads(e) for c, e in stored}
    assert evidence == {
        "MC-3": {"service_date": "2024-02-20", "days_after_death": 36},
        "RX-2": {"fill_date": "2024-02-10", "days_after_death": 26},
    }

    base = pipeline.settings.data_dir / "dagster_io"
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    paths = list(base.rglob("*"))
    assert any(p.name == "enriched_claims" for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    phi_columns = {"member_age", "date_of_birth", "date_of_death", "member_date_of_death"}
    dates = {m[c] for m in batch.MEMBERS for c in ("date_of_birth", "date_of_death") if m[c]}
    frames = [p for p in paths if p.suffix == ".arrow"]
    assert frames
    for path in frames:
        frame = frame_files.read_frame(path)
        assert not phi_columns & set(frame.columns), path
        text = frame.to_csv()
        assert not {d for d in dates if d in text}, path


def test_an_io_directory_others_could_read_is_made_owner_only(tmp_path: Path) -> None:
    """A directory left readable by an earlier release is tightened at the next write."""
    base = tmp_path / "dagster_io"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    io_manager(tmp_path).handle_output(contexts("run-1")[0], pd.DataFrame({"x": [1]}))
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
